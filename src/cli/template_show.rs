//! `templates show`: what the coordinator read from a template's newest
//! version (its variables, parameters, workspace tags, presets, README).

use serde_json::{Value, json};

use super::{CliError, Client, print_json};
use crate::config::Output;
use crate::proto;

pub async fn show(c: &mut Client, name: &str, output: Output) -> Result<(), CliError> {
    let t = c
        .get_template(proto::GetTemplateRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    // Versions pushed before metadata was read have none: null, not an error.
    let meta: Value = serde_json::from_str(&t.meta_json).unwrap_or(Value::Null);
    if output == Output::Json {
        print_json(&json!({
            "name": t.name,
            "active_version_id": t.active_version_id,
            "active_version_name": t.active_version_name,
            "latest_version_id": t.latest_version_id,
            "latest_version_name": t.latest_version_name,
            "meta": meta,
        }));
        return Ok(());
    }
    println!("template:        {}", t.name);
    println!(
        "active version:  {} ({})",
        t.active_version_name, t.active_version_id
    );
    println!(
        "latest version:  {} ({})",
        t.latest_version_name, t.latest_version_id
    );
    for line in describe(&meta) {
        println!("{line}");
    }
    Ok(())
}

/// The human form of the metadata JSON (field names as documented for
/// `-o json`).
fn describe(meta: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let list = |key: &str| meta[key].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    section(&mut out, "variables", list("variables"), |v| {
        let default = v["default_json"].as_str().unwrap_or("(required)");
        format!(
            "{} ({}) = {default}",
            text(&v["name"]),
            text(&v["type_expr"])
        )
    });
    section(&mut out, "parameters", list("parameters"), |p| {
        let options: Vec<String> = p["options"]
            .as_array()
            .map(|o| o.iter().map(|o| text(&o["value"])).collect())
            .unwrap_or_default();
        let mut s = format!("{} ({})", text(&p["name"]), text(&p["type"]));
        match &p["default"] {
            Value::Null => s.push_str(" required"),
            d => s.push_str(&format!(" = {}", text(d))),
        }
        if !options.is_empty() {
            s.push_str(&format!(" options: {}", options.join(", ")));
        }
        if p["mutable"] == Value::Bool(false) {
            s.push_str(" immutable");
        }
        s
    });
    section(&mut out, "workspace tags", list("workspace_tags"), |t| {
        format!(
            "{} = {}  ({})",
            text(&t["key"]),
            text(&t["expr"]),
            text(&t["at"])
        )
    });
    section(&mut out, "presets", list("presets"), |p| {
        let mut s = text(&p["name"]);
        if p["default"] == Value::Bool(true) {
            s.push_str(" (default)");
        }
        if let Some(params) = p["parameters"].as_object() {
            let kv: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect();
            s.push_str(&format!(": {}", kv.join(", ")));
        }
        if let Some(n) = p["prebuilds"]["instances"].as_u64() {
            s.push_str(&format!("; prebuilds: {n}"));
        }
        s
    });
    if let Some(readme) = meta["readme"].as_str() {
        out.push("README:".to_string());
        out.extend(readme.lines().map(|l| format!("  {l}")));
    }
    out
}

fn section(out: &mut Vec<String>, title: &str, items: Vec<Value>, line: impl Fn(&Value) -> String) {
    if items.is_empty() {
        return;
    }
    out.push(format!("{title}:"));
    out.extend(items.iter().map(|i| format!("  {}", line(i))));
}
