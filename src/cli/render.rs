//! How admin commands print: aligned tables for people, JSON for scripts.
//!
//! The JSON field names are a stable interface (documented in the README):
//! add fields, never rename or remove them.

use serde_json::{Value, json};

use crate::proto::{self, JobType, LogLevel, Transition};

/// A time in JSON output: RFC 3339 in UTC with milliseconds
/// (`2026-12-05T01:02:03.456Z`), so scripts can measure with it; empty for
/// "never" (0).
pub fn ms_to_rfc3339(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A time in a table: to the second, which is what a person reads.
pub fn table_time(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn tags_json(tags: &std::collections::HashMap<String, String>) -> Value {
    let sorted: std::collections::BTreeMap<_, _> = tags.iter().collect();
    json!(sorted)
}

pub fn tags_text(tags: &std::collections::HashMap<String, String>) -> String {
    let sorted: crate::tags::Tags = tags.clone().into_iter().collect();
    let s = crate::tags::display(&sorted);
    if s.is_empty() { "(untagged)".into() } else { s }
}

pub fn transition_name(t: i32) -> &'static str {
    match Transition::try_from(t) {
        Ok(Transition::Start) => "start",
        Ok(Transition::Stop) => "stop",
        Ok(Transition::Destroy) => "destroy",
        _ => "",
    }
}

pub fn job_type_name(t: i32) -> &'static str {
    match JobType::try_from(t) {
        Ok(JobType::TemplateImport) => "template_import",
        Ok(JobType::WorkspaceBuild) => "workspace_build",
        _ => "unknown",
    }
}

pub fn job_json(j: &proto::Job) -> Value {
    json!({
        "id": j.id,
        "type": job_type_name(j.r#type),
        "status": j.status,
        "initiator": j.initiator,
        "tags": tags_json(&j.tags),
        "template": j.template,
        "template_version_id": j.template_version_id,
        "template_version_name": j.template_version_name,
        "workspace": j.workspace,
        "transition": transition_name(j.transition),
        "daemon": j.daemon,
        "offered_to": j.offered_to,
        "error": j.error,
        "log_count": j.log_count,
        "created_at": ms_to_rfc3339(j.created_at),
        "started_at": ms_to_rfc3339(j.started_at),
        "finished_at": ms_to_rfc3339(j.finished_at),
        "routing": j.routing,
        "replacements": j.replacements,
    })
}

pub fn daemon_json(d: &proto::Daemon) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "tags": tags_json(&d.tags),
        "status": d.status,
        "current_job_id": d.current_job_id,
        "key_name": d.key_name,
        "version": d.version,
        "last_seen_at": ms_to_rfc3339(d.last_seen_at),
    })
}

pub fn key_json(k: &proto::Key) -> Value {
    json!({
        "name": k.name,
        "tags": tags_json(&k.tags),
        "created_at": ms_to_rfc3339(k.created_at),
    })
}

pub fn template_json(t: &proto::Template) -> Value {
    json!({
        "name": t.name,
        "active_version_id": t.active_version_id,
        "active_version_name": t.active_version_name,
        "created_at": ms_to_rfc3339(t.created_at),
        "variables": t.variables.iter().map(|v| json!({
            "name": v.name,
            "type": v.r#type,
            "description": v.description,
            "default": serde_json::from_str::<Value>(&v.default_json).unwrap_or(Value::Null),
            "sensitive": v.sensitive,
            "required": v.required,
        })).collect::<Vec<_>>(),
    })
}

/// A version in a table: its name (the id for a coordinator from before
/// names), empty for none.
pub fn version_text(name: &str, id: &str) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

pub fn version_json(v: &proto::TemplateVersion) -> Value {
    json!({
        "id": v.id,
        "name": v.name,
        "template": v.template,
        "message": v.message,
        "created_by": v.created_by,
        "created_at": ms_to_rfc3339(v.created_at),
        "import_job_id": v.import_job_id,
        "status": v.status,
        "error": v.error,
        "active": v.active,
        "archived": v.archived,
        "activate": v.activate,
        "workspaces": v.workspaces,
    })
}

pub fn workspace_json(w: &proto::Workspace) -> Value {
    let outputs: std::collections::BTreeMap<_, _> = w
        .outputs
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::from_str::<Value>(v).unwrap_or(Value::Null),
            )
        })
        .collect();
    json!({
        "id": w.id,
        "name": w.name,
        "owner": w.owner,
        "template": w.template,
        "template_version_id": w.template_version_id,
        "template_version_name": w.template_version_name,
        "automatic_updates": w.automatic_updates,
        "outdated": w.outdated,
        "latest_build": {
            "transition": transition_name(w.latest_transition),
            "job_id": w.latest_job_id,
            "status": w.latest_job_status,
        },
        "outputs": outputs,
        "created_at": ms_to_rfc3339(w.created_at),
        "claimed_from": (!w.claimed_from.is_empty()).then(|| w.claimed_from.clone()),
        "claimed_at": (w.claimed_at != 0).then(|| ms_to_rfc3339(w.claimed_at)),
    })
}

/// `workspaces create -o json` (without `--wait`): what was enqueued, and
/// the prebuild it claimed (null: built anew).
pub fn created_json(name: &str, r: &proto::BuildResponse) -> Value {
    json!({
        "name": name,
        "workspace_id": r.workspace_id,
        "job_id": r.job_id,
        "claimed_from": (!r.claimed_from.is_empty()).then(|| r.claimed_from.clone()),
        "claimed_built_at": (r.claimed_built_at != 0).then(|| ms_to_rfc3339(r.claimed_built_at)),
    })
}

/// How long ago `ms` (since epoch) was, coarsely: "40s ago", "2h ago".
pub fn ago(ms: i64) -> String {
    let secs = (chrono::Utc::now().timestamp_millis() - ms).max(0) / 1000;
    let (n, unit) = match secs {
        s if s < 120 => (s, "s"),
        s if s < 7200 => (s / 60, "m"),
        s if s < 172_800 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    format!("{n}{unit} ago")
}

/// Prints rows as a left-aligned table with a header.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

/// One log line for a terminal: level marker for warnings and errors.
pub fn log_line(l: &proto::LogLine) -> String {
    let marker = match LogLevel::try_from(l.level) {
        Ok(LogLevel::Error) => "ERROR ",
        Ok(LogLevel::Warn) => "WARN ",
        _ => "",
    };
    format!("{marker}{}", l.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_times_have_milliseconds_and_tables_seconds() {
        let ms = 1_796_432_523_456; // 2026-12-05T01:02:03.456Z
        assert_eq!(ms_to_rfc3339(ms), "2026-12-05T01:02:03.456Z");
        assert_eq!(ms_to_rfc3339(ms - 456), "2026-12-05T01:02:03.000Z");
        assert_eq!(table_time(ms), "2026-12-05T01:02:03Z");
        assert_eq!(ms_to_rfc3339(0), "");
    }
}
