//! Reads terraform's `-json` plan stream for resources the plan replaces.
//! A claim build that replaces a resource (say a VM whose name depends on
//! the owner) throws away what the prebuild paid for, so the runner reports
//! it and the log says how to keep it (`ignore_changes`).

use serde::Deserialize;

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: Option<String>,
    change: Option<Change>,
}

#[derive(Deserialize)]
struct Change {
    resource: Option<Resource>,
    action: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Resource {
    addr: Option<String>,
}

/// One resource the plan replaces, rendered for the log and `jobs show`:
/// its address, and terraform's reason when it gave one.
pub fn replacement(line: &str) -> Option<String> {
    let msg: Message = serde_json::from_str(line).ok()?;
    if !matches!(
        msg.kind.as_deref(),
        Some("planned_change" | "resource_drift")
    ) {
        return None;
    }
    let change = msg.change?;
    if change.action.as_deref() != Some("replace") {
        return None;
    }
    let addr = change.resource?.addr?;
    Some(match change.reason.as_deref().and_then(reason) {
        Some(why) => format!("{addr} ({why})"),
        None => addr,
    })
}

/// terraform's replace reasons, in words.
fn reason(code: &str) -> Option<&'static str> {
    Some(match code {
        "cannot_update" => "an attribute that forces replacement changed",
        "replace_by_triggers" => "replace_triggered_by fired",
        "replace_by_request" => "-replace was requested",
        "tainted" => "tainted",
        _ => return None,
    })
}

/// The one warning line a claim build's log gets when it replaces.
pub fn warning(replacements: &[String]) -> String {
    format!(
        "Claiming this prebuilt workspace replaces {} resource(s): {}. The prebuild's \
         work for them is lost; to keep them, add the attributes that change with the \
         owner to the resource's ignore_changes, e.g. lifecycle {{ ignore_changes = [owner] }}",
        replacements.len(),
        replacements.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_replacements_are_found_with_their_reason() {
        let line = r#"{"@level":"info","@message":"terraform_data.claim: Plan to replace","type":"planned_change","change":{"resource":{"addr":"terraform_data.claim","resource_type":"terraform_data"},"action":"replace","reason":"cannot_update"}}"#;
        assert_eq!(
            replacement(line).as_deref(),
            Some("terraform_data.claim (an attribute that forces replacement changed)")
        );
        let drift =
            r#"{"type":"resource_drift","change":{"resource":{"addr":"a.b"},"action":"replace"}}"#;
        assert_eq!(replacement(drift).as_deref(), Some("a.b"));
        let odd = r#"{"type":"planned_change","change":{"resource":{"addr":"a.b"},"action":"replace","reason":"new"}}"#;
        assert_eq!(replacement(odd).as_deref(), Some("a.b"));
    }

    #[test]
    fn other_changes_and_lines_are_not_replacements() {
        for line in [
            r#"{"type":"planned_change","change":{"resource":{"addr":"a.b"},"action":"update"}}"#,
            r#"{"type":"planned_change","change":{"resource":{"addr":"a.b"},"action":"create"}}"#,
            r#"{"type":"change_summary","change":{"action":"replace"}}"#,
            r#"{"type":"planned_change","change":{"action":"replace"}}"#,
            "not json",
            "",
        ] {
            assert_eq!(replacement(line), None, "{line}");
        }
    }

    #[test]
    fn the_warning_names_every_resource_and_the_hint() {
        let w = warning(&["a.b".into(), "c.d (tainted)".into()]);
        assert!(w.contains("2 resource(s): a.b; c.d (tainted)."), "{w}");
        assert!(w.contains("lifecycle { ignore_changes = [owner] }"), "{w}");
    }
}
