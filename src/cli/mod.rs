//! Admin subcommands: keys, templates, workspaces, jobs, daemons. Each is a
//! thin gRPC call against the coordinator's `Admin` service plus printing;
//! one module per command group. Destructive commands ask first
//! (`confirm`); list tables pick their columns with `-c` (`columns`).

mod cancel;
mod client;
mod columns;
mod completion;
mod confirm;
mod daemons;
mod jobs;
mod keys;
mod logs;
mod pages;
mod prebuilds;
pub mod render;
mod template_show;
mod templates;
mod versions;
mod workspaces;

pub use completion::{completion, man};
pub use daemons::daemons;
pub use jobs::jobs;
pub use keys::keys;
pub use prebuilds::prebuilds;
pub use templates::templates;
pub use workspaces::workspaces;

use std::collections::HashMap;

use crate::config::{AdminArgs, Output};
use crate::coordinator::store::JobStatus;
use crate::proto;
use client::Client;
use logs::print_logs;
use render::job_json;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage or input (exit 64).
    #[error("{0}")]
    Usage(String),
    /// The command ran but did not succeed (exit 1).
    #[error("{0}")]
    Failed(String),
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => crate::exit::CONFIG,
            CliError::Status(s) if s.code() == tonic::Code::InvalidArgument => crate::exit::CONFIG,
            _ => crate::exit::FATAL,
        }
    }
}

fn pairs(what: &str, items: &[String]) -> Result<HashMap<String, String>, CliError> {
    let tags =
        crate::tags::parse_pairs(items).map_err(|e| CliError::Usage(format!("{what}: {e}")))?;
    Ok(tags.into_iter().collect())
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn client(admin: &AdminArgs) -> Result<Client, CliError> {
    client::connect(admin).await
}

/// Streams a job's logs until it ends; fails unless it succeeded.
async fn wait_for_job(c: &mut Client, job_id: &str) -> Result<(), CliError> {
    let hint = tokio::spawn(pending_hint(c.clone(), job_id.to_string()));
    let logs = print_logs(c, job_id, true).await;
    hint.abort();
    logs?;
    let job = c
        .get_job(proto::GetJobRequest {
            id: job_id.to_string(),
        })
        .await?
        .into_inner();
    if job_status(&job) == Some(JobStatus::Succeeded) {
        eprintln!("Job {job_id} succeeded.");
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "job {job_id} {}: {}",
            job.status, job.error
        )))
    }
}

/// If the job is still pending after a few seconds, says why a waiting
/// user sees nothing: which connected daemons could take it, if any.
async fn pending_hint(mut c: Client, job_id: String) {
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let Ok(job) = c.get_job(proto::GetJobRequest { id: job_id.clone() }).await else {
        return;
    };
    let job = job.into_inner();
    if job.status != "pending" {
        return;
    }
    eprintln!("Job {job_id} is pending:");
    for line in &job.routing {
        eprintln!("  {line}");
    }
}

/// A job's status as the coordinator spells it; `None`: one this CLI does
/// not know (a newer coordinator's).
fn job_status(j: &proto::Job) -> Option<JobStatus> {
    j.status.parse().ok()
}

/// One job: JSON, or one `field: value` line per JSON field.
fn print_job(j: &proto::Job, output: Output) {
    let v = job_json(j);
    if output == Output::Json {
        print_json(&v);
        return;
    }
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            let s = match val {
                serde_json::Value::String(s) => s.clone(),
                // Lines (the routing explanation): one per line.
                serde_json::Value::Array(lines) => lines
                    .iter()
                    .map(|l| l.as_str().map_or_else(|| l.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(&format!("\n{:21}", "")),
                other => other.to_string(),
            };
            println!("{:<20} {s}", format!("{k}:"));
        }
    }
}
