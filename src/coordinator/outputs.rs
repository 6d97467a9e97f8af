//! What a Workspace message shows of its state: the outputs, bounded so
//! a Workspace (and a page of them) always fits in a message.

use crate::grpc::limits::{MAX_OUTPUT_BYTES, MAX_OUTPUTS_BYTES};

/// Outputs of a terraform state (v4 JSON), name → JSON value; sensitive
/// outputs are masked, and values over [`MAX_OUTPUT_BYTES`] replaced by a
/// note saying so (the state itself keeps them). Once the outputs shown
/// reach [`MAX_OUTPUTS_BYTES`] together, the rest are left out and one
/// entry, `*omitted*` (no output can have that name), says how many: a
/// Workspace message, and a page of them, stays bounded.
pub fn state_outputs(state: Option<&[u8]>) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let Some(state) = state else { return out };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(state) else {
        return out;
    };
    if let Some(outputs) = v.get("outputs").and_then(|o| o.as_object()) {
        let mut total = 0;
        let mut omitted = 0;
        for (name, o) in outputs {
            let value = if o.get("sensitive").and_then(|s| s.as_bool()) == Some(true) {
                "\"*sensitive*\"".to_string()
            } else {
                o.get("value").map(|v| v.to_string()).unwrap_or_default()
            };
            let value = if value.len() > MAX_OUTPUT_BYTES {
                format!(
                    "\"*omitted: {} bytes, over the {MAX_OUTPUT_BYTES}-byte limit for outputs shown*\"",
                    value.len()
                )
            } else {
                value
            };
            total += name.len() + value.len();
            if total > MAX_OUTPUTS_BYTES {
                omitted += 1;
                continue;
            }
            out.insert(name.clone(), value);
        }
        if omitted > 0 {
            out.insert(
                "*omitted*".to_string(),
                format!(
                    "\"*{omitted} more outputs: over the {MAX_OUTPUTS_BYTES}-byte limit for outputs shown*\""
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_over_the_limit_are_replaced_by_a_note() {
        let big = "x".repeat(MAX_OUTPUT_BYTES);
        let state = serde_json::json!({
            "outputs": {
                "small": {"value": "hi"},
                "big": {"value": big},
                "secret": {"value": "pw", "sensitive": true},
            }
        });
        let out = state_outputs(Some(state.to_string().as_bytes()));
        assert_eq!(out["small"], "\"hi\"");
        assert_eq!(out["secret"], "\"*sensitive*\"");
        let note = format!(
            "\"*omitted: {} bytes, over the {MAX_OUTPUT_BYTES}-byte limit for outputs shown*\"",
            MAX_OUTPUT_BYTES + 2
        );
        assert_eq!(out["big"], note);
        assert!(
            serde_json::from_str::<String>(&out["big"]).is_ok(),
            "still JSON"
        );
    }
}
