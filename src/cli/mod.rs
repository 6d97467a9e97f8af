//! Admin subcommands: keys, templates, workspaces, jobs, daemons. Each is a
//! thin gRPC call against the coordinator's `Admin` service plus printing.

mod cancel;
mod client;
mod logs;
mod pages;
mod prebuilds;
pub mod render;
mod template_show;

pub use prebuilds::prebuilds;

use std::collections::HashMap;

use crate::config::{
    AdminArgs, BuildArgs, DaemonsCmd, JobsCmd, KeysCmd, Output, TemplatesCmd, WorkspacesCmd,
};
use crate::coordinator::store::JobStatus;
use crate::proto::{self, Transition};
use client::Client;
use logs::print_logs;
use render::{job_json, table, tags_text};
use serde_json::json;

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

pub async fn keys(cmd: KeysCmd) -> Result<(), CliError> {
    match cmd {
        KeysCmd::Create { name, tags, admin } => {
            let tags = pairs("--tag", &tags)?;
            let resp = client(&admin)
                .await?
                .create_key(proto::CreateKeyRequest {
                    name: name.clone(),
                    tags,
                })
                .await?
                .into_inner();
            eprintln!(
                "Created provisioner key {name:?}. Save the secret below: it is not shown again."
            );
            println!("{}", resp.secret);
        }
        KeysCmd::List { page, out, admin } => {
            let c = client(&admin).await?;
            let (keys, next) =
                pages::collect(pages::limit(page.limit), page.after, |limit, after| {
                    let mut c = c.clone();
                    async move {
                        let r = c
                            .list_keys(proto::ListKeysRequest { limit, after })
                            .await?
                            .into_inner();
                        Ok((r.keys, r.next_cursor))
                    }
                })
                .await?;
            if out.output == Output::Json {
                print_json(&json!(
                    keys.iter().map(render::key_json).collect::<Vec<_>>()
                ));
            } else {
                table(
                    &["NAME", "TAGS", "CREATED"],
                    keys.iter()
                        .map(|k| {
                            vec![
                                k.name.clone(),
                                tags_text(&k.tags),
                                render::ms_to_rfc3339(k.created_at),
                            ]
                        })
                        .collect(),
                );
            }
            pages::hint("keys", &next);
        }
        KeysCmd::Delete { name, admin } => {
            client(&admin)
                .await?
                .delete_key(proto::DeleteKeyRequest { name: name.clone() })
                .await?;
            eprintln!("Deleted provisioner key {name:?}; its daemons are disconnected.");
        }
    }
    Ok(())
}

pub async fn templates(cmd: TemplatesCmd) -> Result<(), CliError> {
    match cmd {
        TemplatesCmd::Push {
            name,
            dir,
            tags,
            vars,
            wait,
            admin,
        } => {
            let provisioner_tags = pairs("--provisioner-tag", &tags)?;
            let variables = pairs("--var", &vars)?;
            let archive = crate::archive::tar_dir(&dir)
                .map_err(|e| CliError::Usage(format!("push template {name:?}: {e}")))?;
            let mut c = client(&admin).await?;
            let header = proto::PushTemplateRequest {
                name: name.clone(),
                provisioner_tags,
                variables,
                ..Default::default()
            };
            // In chunks: an archive may be larger than one message.
            let parts = crate::chunk::push_template_parts(header, &archive);
            let resp = c
                .push_template(tokio_stream::iter(parts))
                .await?
                .into_inner();
            eprintln!(
                "Pushed template {name:?} version {}; import job {}",
                resp.template_version_id, resp.job_id
            );
            if wait {
                wait_for_job(&mut c, &resp.job_id).await?;
            } else {
                println!("{}", resp.job_id);
            }
        }
        TemplatesCmd::Show { name, out, admin } => {
            let mut c = client(&admin).await?;
            template_show::show(&mut c, &name, out.output).await?;
        }
        TemplatesCmd::List { page, out, admin } => {
            let c = client(&admin).await?;
            let (ts, next) =
                pages::collect(pages::limit(page.limit), page.after, |limit, after| {
                    let mut c = c.clone();
                    async move {
                        let r = c
                            .list_templates(proto::ListTemplatesRequest { limit, after })
                            .await?
                            .into_inner();
                        Ok((r.templates, r.next_cursor))
                    }
                })
                .await?;
            if out.output == Output::Json {
                print_json(&json!(
                    ts.iter().map(render::template_json).collect::<Vec<_>>()
                ));
            } else {
                table(
                    &["NAME", "ACTIVE VERSION", "VARIABLES", "CREATED"],
                    ts.iter()
                        .map(|t| {
                            let vars: Vec<_> = t.variables.iter().map(|v| v.name.clone()).collect();
                            vec![
                                t.name.clone(),
                                t.active_version_id.clone(),
                                vars.join(","),
                                render::ms_to_rfc3339(t.created_at),
                            ]
                        })
                        .collect(),
                );
            }
            pages::hint("templates", &next);
        }
    }
    Ok(())
}

pub async fn workspaces(cmd: WorkspacesCmd) -> Result<(), CliError> {
    match cmd {
        WorkspacesCmd::Create {
            name,
            template,
            owner,
            vars,
            params,
            preset,
            wait,
            out,
            admin,
        } => {
            let variables = pairs("--var", &vars)?;
            let parameters = pairs("--param", &params)?;
            let mut c = client(&admin).await?;
            let resp = c
                .create_workspace(proto::CreateWorkspaceRequest {
                    name: name.clone(),
                    template,
                    owner: owner.unwrap_or_default(),
                    variables,
                    parameters,
                    // As Coder's CLI: no --preset is the template's
                    // default preset; `none` is none.
                    default_preset: preset.is_none(),
                    preset: preset.unwrap_or_default(),
                })
                .await?
                .into_inner();
            eprintln!("Created workspace {name:?}; build job {}", resp.job_id);
            if !resp.claimed_from.is_empty() {
                eprintln!(
                    "claimed prebuild {} (built {})",
                    resp.claimed_from,
                    render::ago(resp.claimed_built_at)
                );
            } else if resp.claim_tried {
                eprintln!("no eligible prebuild: building");
            }
            if out.output == Output::Json && !wait {
                print_json(&render::created_json(&name, &resp));
            } else {
                finish_build(&mut c, &name, &resp.job_id, wait, out.output).await?;
            }
        }
        WorkspacesCmd::Start(a) => build(a, Transition::Start).await?,
        WorkspacesCmd::Stop(a) => build(a, Transition::Stop).await?,
        WorkspacesCmd::Delete(a) => build(a, Transition::Destroy).await?,
        WorkspacesCmd::List {
            owner,
            template,
            page,
            out,
            admin,
        } => {
            let c = client(&admin).await?;
            let (owner, template) = (owner.unwrap_or_default(), template.unwrap_or_default());
            let (ws, next) =
                pages::collect(pages::limit(page.limit), page.after, |limit, after| {
                    let mut c = c.clone();
                    let (owner, template) = (owner.clone(), template.clone());
                    async move {
                        let r = c
                            .list_workspaces(proto::ListWorkspacesRequest {
                                limit,
                                after,
                                owner,
                                template,
                            })
                            .await?
                            .into_inner();
                        Ok((r.workspaces, r.next_cursor))
                    }
                })
                .await?;
            if out.output == Output::Json {
                print_json(&json!(
                    ws.iter().map(render::workspace_json).collect::<Vec<_>>()
                ));
            } else {
                table(
                    &["NAME", "OWNER", "TEMPLATE", "LAST BUILD", "STATUS"],
                    ws.iter()
                        .map(|w| {
                            vec![
                                w.name.clone(),
                                w.owner.clone(),
                                w.template.clone(),
                                render::transition_name(w.latest_transition).into(),
                                w.latest_job_status.clone(),
                            ]
                        })
                        .collect(),
                );
            }
            pages::hint("workspaces", &next);
        }
        WorkspacesCmd::Show { name, out, admin } => {
            let w = client(&admin)
                .await?
                .get_workspace(proto::GetWorkspaceRequest { name })
                .await?
                .into_inner();
            print_workspace(&w, out.output);
        }
    }
    Ok(())
}

fn print_workspace(w: &proto::Workspace, output: Output) {
    if output == Output::Json {
        print_json(&render::workspace_json(w));
        return;
    }
    println!("Workspace:   {}", w.name);
    println!("Owner:       {}", w.owner);
    println!(
        "Template:    {} (version {})",
        w.template, w.template_version_id
    );
    println!(
        "Last build:  {} {} (job {})",
        render::transition_name(w.latest_transition),
        w.latest_job_status,
        w.latest_job_id
    );
    if !w.claimed_from.is_empty() {
        println!(
            "Claimed:     from prebuild {} at {}",
            w.claimed_from,
            render::ms_to_rfc3339(w.claimed_at)
        );
    }
    if !w.outputs.is_empty() {
        println!("Outputs:");
        let sorted: std::collections::BTreeMap<_, _> = w.outputs.iter().collect();
        for (k, v) in sorted {
            println!("  {k} = {v}");
        }
    }
}

async fn build(a: BuildArgs, transition: Transition) -> Result<(), CliError> {
    let parameters = pairs("--param", &a.params)?;
    let mut c = client(&a.admin).await?;
    let resp = c
        .build_workspace(proto::BuildWorkspaceRequest {
            name: a.name.clone(),
            transition: transition as i32,
            parameters,
        })
        .await?
        .into_inner();
    eprintln!(
        "Workspace {:?}: {} build job {}",
        a.name,
        render::transition_name(transition as i32),
        resp.job_id
    );
    finish_build(&mut c, &a.name, &resp.job_id, a.wait, Output::Table).await
}

async fn finish_build(
    c: &mut Client,
    name: &str,
    job_id: &str,
    wait: bool,
    output: Output,
) -> Result<(), CliError> {
    if !wait {
        println!("{job_id}");
        return Ok(());
    }
    wait_for_job(c, job_id).await?;
    // A deleted workspace is gone once its destroy succeeded.
    if let Ok(w) = c
        .get_workspace(proto::GetWorkspaceRequest {
            name: name.to_string(),
        })
        .await
    {
        print_workspace(&w.into_inner(), output);
    }
    Ok(())
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

pub async fn jobs(cmd: JobsCmd) -> Result<(), CliError> {
    match cmd {
        JobsCmd::List {
            status,
            initiator,
            limit,
            after,
            out,
            admin,
        } => {
            let c = client(&admin).await?;
            let (status, initiator) = (status.unwrap_or_default(), initiator.unwrap_or_default());
            let (jobs, next) = pages::collect(pages::limit(Some(limit)), after, |limit, after| {
                let mut c = c.clone();
                let (status, initiator) = (status.clone(), initiator.clone());
                async move {
                    let r = c
                        .list_jobs(proto::ListJobsRequest {
                            status,
                            initiator,
                            limit,
                            after,
                        })
                        .await?
                        .into_inner();
                    Ok((r.jobs, r.next_cursor))
                }
            })
            .await?;
            if out.output == Output::Json {
                print_json(&json!(jobs.iter().map(job_json).collect::<Vec<_>>()));
            } else {
                table(
                    &[
                        "ID",
                        "TYPE",
                        "STATUS",
                        "INITIATOR",
                        "TAGS",
                        "TARGET",
                        "DAEMON",
                        "CREATED",
                    ],
                    jobs.iter()
                        .map(|j| {
                            let target = if j.workspace.is_empty() {
                                j.template.clone()
                            } else {
                                format!(
                                    "{} ({})",
                                    j.workspace,
                                    render::transition_name(j.transition)
                                )
                            };
                            vec![
                                j.id.clone(),
                                render::job_type_name(j.r#type).into(),
                                j.status.clone(),
                                j.initiator.clone(),
                                tags_text(&j.tags),
                                target,
                                j.daemon.clone(),
                                render::ms_to_rfc3339(j.created_at),
                            ]
                        })
                        .collect(),
                );
            }
            pages::hint("jobs", &next);
        }
        JobsCmd::Show { id, out, admin } => {
            let j = client(&admin)
                .await?
                .get_job(proto::GetJobRequest { id })
                .await?
                .into_inner();
            print_job(&j, out.output);
        }
        JobsCmd::Cancel {
            ids,
            wait,
            out,
            admin,
        } => {
            let mut c = client(&admin).await?;
            cancel::cancel_all(&mut c, &ids, wait, out.output).await?;
        }
        JobsCmd::Logs { id, follow, admin } => {
            let mut c = client(&admin).await?;
            print_logs(&mut c, &id, follow).await?;
        }
    }
    Ok(())
}

/// One job: JSON, or one `field: value` line per JSON field.
/// A job's status as the coordinator spells it; `None`: one this CLI does
/// not know (a newer coordinator's).
fn job_status(j: &proto::Job) -> Option<JobStatus> {
    j.status.parse().ok()
}

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

pub async fn daemons(cmd: DaemonsCmd) -> Result<(), CliError> {
    let DaemonsCmd::List { page, out, admin } = cmd;
    let c = client(&admin).await?;
    let (ds, next) = pages::collect(pages::limit(page.limit), page.after, |limit, after| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_daemons(proto::ListDaemonsRequest { limit, after })
                .await?
                .into_inner();
            Ok((r.daemons, r.next_cursor))
        }
    })
    .await?;
    if out.output == Output::Json {
        print_json(&json!(
            ds.iter().map(render::daemon_json).collect::<Vec<_>>()
        ));
    } else {
        table(
            &["NAME", "STATUS", "TAGS", "CURRENT JOB", "KEY", "LAST SEEN"],
            ds.iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.status.clone(),
                        tags_text(&d.tags),
                        d.current_job_id.clone(),
                        d.key_name.clone(),
                        render::ms_to_rfc3339(d.last_seen_at),
                    ]
                })
                .collect(),
        );
    }
    pages::hint("daemons", &next);
    Ok(())
}
