//! Reads terraform's `-json` plan stream for resources the plan replaces.
//! A claim build that replaces a resource (say a VM whose name depends on
//! the owner) throws away what the prebuild paid for, so the runner reports
//! it and the log says how to keep it (`ignore_changes`). The stream names
//! the resource and why; the attributes that force it are only in the plan
//! file (`terraform show -json`, `resource_changes[].change.replace_paths`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

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

/// One resource the plan replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub addr: String,
    /// terraform's reason, in words, when it gave a known one.
    pub reason: Option<&'static str>,
    /// The attributes that force it (`replace_paths`), when known.
    pub attributes: Vec<String>,
}

impl std::fmt::Display for Replacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)?;
        match (self.attributes.is_empty(), self.reason) {
            (false, _) => write!(f, " (forced by {})", self.attributes.join(", ")),
            (true, Some(why)) => write!(f, " ({why})"),
            (true, None) => Ok(()),
        }
    }
}

/// The resource a plan stream line says is replaced, if it says so.
pub fn replacement(line: &str) -> Option<Replacement> {
    // Every JSON line of every command passes through here: only a line
    // that can say "replace" (terraform never escapes that ASCII) is parsed.
    if !line.contains("\"replace\"") {
        return None;
    }
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
    Some(Replacement {
        addr: change.resource?.addr?,
        reason: change.reason.as_deref().and_then(reason),
        attributes: Vec::new(),
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

/// The attributes forcing each replaced resource, by address, from
/// `terraform show -json <planfile>`; nothing when it cannot be read (the
/// warning then goes without them). A path `["a", 0, "b"]` reads `a[0].b`.
pub fn replace_paths(show_json: &str) -> BTreeMap<String, Vec<String>> {
    let Ok(plan) = serde_json::from_str::<Value>(show_json) else {
        return BTreeMap::new();
    };
    let mut found = BTreeMap::new();
    let changes = plan["resource_changes"].as_array().into_iter().flatten();
    for rc in changes {
        let (Some(addr), Some(paths)) = (
            rc["address"].as_str(),
            rc["change"]["replace_paths"].as_array(),
        ) else {
            continue;
        };
        let attrs: Vec<String> = paths.iter().filter_map(path_text).collect();
        if !attrs.is_empty() {
            found.insert(addr.to_string(), attrs);
        }
    }
    found
}

fn path_text(path: &Value) -> Option<String> {
    let mut text = String::new();
    for step in path.as_array()? {
        match step {
            Value::String(name) if text.is_empty() => text.push_str(name),
            Value::String(name) => {
                text.push('.');
                text.push_str(name);
            }
            other => text.push_str(&format!("[{other}]")),
        }
    }
    (!text.is_empty()).then_some(text)
}

/// The one warning line a claim build's log gets when it replaces. The
/// hint names the forcing attributes when terraform said which.
pub fn warning(replacements: &[Replacement]) -> String {
    let mut attrs: Vec<&str> = replacements
        .iter()
        .flat_map(|r| &r.attributes)
        .map(|a| a.split(['.', '[']).next().unwrap_or(a))
        .collect();
    attrs.sort_unstable();
    attrs.dedup();
    let hint = if attrs.is_empty() {
        "owner".to_string()
    } else {
        attrs.join(", ")
    };
    let list: Vec<String> = replacements.iter().map(ToString::to_string).collect();
    format!(
        "Claiming this prebuilt workspace replaces {} resource(s): {}. The prebuild's \
         work for them is lost; to keep them, ignore the attributes that change with the \
         owner: lifecycle {{ ignore_changes = [{hint}] }}",
        replacements.len(),
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(r: Option<Replacement>) -> Option<String> {
        r.map(|r| r.to_string())
    }

    #[test]
    fn planned_replacements_are_found_with_their_reason() {
        let line = r#"{"@level":"info","@message":"terraform_data.claim: Plan to replace","type":"planned_change","change":{"resource":{"addr":"terraform_data.claim","resource_type":"terraform_data"},"action":"replace","reason":"cannot_update"}}"#;
        assert_eq!(
            shown(replacement(line)).as_deref(),
            Some("terraform_data.claim (an attribute that forces replacement changed)")
        );
        let drift =
            r#"{"type":"resource_drift","change":{"resource":{"addr":"a.b"},"action":"replace"}}"#;
        assert_eq!(shown(replacement(drift)).as_deref(), Some("a.b"));
        let odd = r#"{"type":"planned_change","change":{"resource":{"addr":"a.b"},"action":"replace","reason":"new"}}"#;
        assert_eq!(shown(replacement(odd)).as_deref(), Some("a.b"));
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
    fn replace_paths_come_from_the_shown_plan() {
        let plan = r#"{"format_version":"1.2","resource_changes":[
            {"address":"terraform_data.home","change":{"actions":["delete","create"],
             "replace_paths":[["triggers_replace"],["disk",0,"name"]]}},
            {"address":"terraform_data.kept","change":{"actions":["no-op"]}},
            {"address":"x.y","change":{"replace_paths":[[]]}}]}"#;
        let paths = replace_paths(plan);
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert_eq!(
            paths["terraform_data.home"],
            ["triggers_replace", "disk[0].name"]
        );
        assert!(replace_paths("{truncated").is_empty());
        assert!(replace_paths(r#"{"resource_changes":7}"#).is_empty());
    }

    #[test]
    fn the_warning_names_every_resource_and_the_hint() {
        let home = Replacement {
            addr: "terraform_data.home".into(),
            reason: Some("tainted"),
            attributes: vec!["triggers_replace".into(), "disk[0].name".into()],
        };
        let vm = Replacement {
            addr: "c.d".into(),
            reason: Some("tainted"),
            attributes: Vec::new(),
        };
        let w = warning(&[home, vm.clone()]);
        assert!(
            w.contains(
                "2 resource(s): terraform_data.home (forced by triggers_replace, disk[0].name); \
                 c.d (tainted)."
            ),
            "{w}"
        );
        assert!(
            w.contains("lifecycle { ignore_changes = [disk, triggers_replace] }"),
            "{w}"
        );
        let w = warning(&[vm]);
        assert!(w.contains("lifecycle { ignore_changes = [owner] }"), "{w}");
    }
}
