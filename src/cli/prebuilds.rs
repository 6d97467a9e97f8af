//! `prebuilds pause|resume|status|reset`: the runbook's first and last
//! steps, and lifting a hard limit.

use serde_json::{Value, json};

use super::render::{ms_to_rfc3339, table, table_time};
use super::{CliError, client, print_json};
use crate::config::{Output, PrebuildsCmd};
use crate::proto;

pub async fn prebuilds(cmd: PrebuildsCmd) -> Result<(), CliError> {
    let (status, output) = match cmd {
        PrebuildsCmd::Pause { out, admin } => {
            let s = client(&admin)
                .await?
                .pause_prebuilds(proto::PausePrebuildsRequest {})
                .await?
                .into_inner();
            eprintln!(
                "Prebuilds paused: no prebuilt workspace is created or deleted until `provisionerd prebuilds resume`."
            );
            (s, out.output)
        }
        PrebuildsCmd::Resume { out, admin } => {
            let s = client(&admin)
                .await?
                .resume_prebuilds(proto::ResumePrebuildsRequest {})
                .await?
                .into_inner();
            eprintln!("Prebuilds resumed.");
            (s, out.output)
        }
        PrebuildsCmd::Reset {
            template,
            preset,
            out,
            admin,
        } => {
            let s = client(&admin)
                .await?
                .reset_prebuilds(proto::ResetPrebuildsRequest {
                    template: template.clone(),
                    preset: preset.clone(),
                })
                .await?
                .into_inner();
            eprintln!(
                "Prebuilds of {template} / {preset} reset: failed creates so far no longer count."
            );
            (s, out.output)
        }
        PrebuildsCmd::Status { out, admin } => {
            let s = client(&admin)
                .await?
                .get_prebuild_status(proto::GetPrebuildStatusRequest {})
                .await?
                .into_inner();
            (s, out.output)
        }
    };
    print_status(&status, output);
    Ok(())
}

fn status_json(s: &proto::PrebuildStatus) -> Value {
    json!({
        "paused": s.paused,
        "interval_ms": s.interval_ms,
        "reconciled_at": (s.reconciled_at > 0).then(|| ms_to_rfc3339(s.reconciled_at)),
        "presets": s.presets.iter().map(|p| json!({
            "template": p.template,
            "preset": p.preset,
            "template_version_id": p.template_version_id,
            "desired": p.desired,
            "running": p.running,
            "in_flight": p.in_flight,
            "eligible": p.eligible,
            "failures": p.failures,
            "hard_limited": p.hard_limited,
            "backoff_until": (p.backoff_until > 0).then(|| ms_to_rfc3339(p.backoff_until)),
            "error": p.error,
        })).collect::<Vec<_>>(),
    })
}

fn print_status(s: &proto::PrebuildStatus, output: Output) {
    if output == Output::Json {
        print_json(&status_json(s));
        return;
    }
    let reconciler = if s.interval_ms == 0 {
        "off on this coordinator (--prebuild-reconcile-interval 0)".to_string()
    } else {
        format!("every {} ms", s.interval_ms)
    };
    println!("paused:     {}", if s.paused { "yes" } else { "no" });
    println!("reconciler: {reconciler}");
    if s.reconciled_at > 0 {
        println!("last run:   {}", table_time(s.reconciled_at));
    }
    println!();
    table(
        &[
            "TEMPLATE",
            "PRESET",
            "DESIRED",
            "RUNNING",
            "IN FLIGHT",
            "FAILURES",
            "BACKOFF UNTIL",
            "HARD LIMITED",
            "ERROR",
        ],
        s.presets
            .iter()
            .map(|p| {
                vec![
                    p.template.clone(),
                    p.preset.clone(),
                    p.desired.to_string(),
                    p.running.to_string(),
                    p.in_flight.to_string(),
                    p.failures.to_string(),
                    if p.backoff_until > 0 {
                        table_time(p.backoff_until)
                    } else {
                        String::new()
                    },
                    if p.hard_limited { "yes" } else { "" }.to_string(),
                    p.error.clone(),
                ]
            })
            .collect(),
    );
}
