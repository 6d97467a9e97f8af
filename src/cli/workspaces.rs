//! `workspaces create|start|stop|update|delete|autoupdate|list|show`.

use serde_json::json;

use super::client::Client;
use super::columns::Columns;
use super::confirm::confirm;
use super::{CliError, client, pages, pairs, print_json, render, wait_for_job};
use crate::config::{BuildArgs, Output, WorkspacesCmd};
use crate::proto::{self, Transition};

const HEADERS: [&str; 6] = [
    "NAME",
    "OWNER",
    "TEMPLATE",
    "VERSION",
    "LAST BUILD",
    "STATUS",
];

pub async fn workspaces(cmd: WorkspacesCmd) -> Result<(), CliError> {
    match cmd {
        WorkspacesCmd::Create {
            name,
            template,
            owner,
            vars,
            params,
            preset,
            template_version,
            automatic_updates,
            wait,
            out,
            admin,
        } => {
            let variables = pairs("--var", &vars)?;
            let parameters = pairs("--param", &params)?;
            let versioned = template_version.is_some()
                || automatic_updates != crate::config::AutomaticUpdates::Never;
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
                    template_version: template_version.unwrap_or_default(),
                    automatic_updates: automatic_updates.as_str().to_string(),
                })
                .await?
                .into_inner();
            if versioned {
                check_versions_known(&mut c, &name, &resp.job_id).await?;
            }
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
        WorkspacesCmd::Start(a) => build(a, Transition::Start, false, false).await?,
        WorkspacesCmd::Stop(a) => build(a, Transition::Stop, false, false).await?,
        WorkspacesCmd::Update(a) => build(a, Transition::Start, false, true).await?,
        WorkspacesCmd::Delete(a) => build(a.build, Transition::Destroy, a.yes.yes, false).await?,
        WorkspacesCmd::Autoupdate {
            name,
            policy,
            admin,
        } => {
            let w = client(&admin)
                .await?
                .set_automatic_updates(proto::SetAutomaticUpdatesRequest {
                    name: name.clone(),
                    automatic_updates: policy.as_str().to_string(),
                })
                .await?
                .into_inner();
            eprintln!(
                "Workspace {name:?}: automatic updates {}",
                w.automatic_updates
            );
        }
        WorkspacesCmd::List {
            owner,
            template,
            page,
            out,
            cols,
            admin,
        } => {
            let columns = Columns::pick("workspaces list", &HEADERS, &cols.columns)?;
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
                columns.print(
                    &HEADERS,
                    ws.iter()
                        .map(|w| {
                            vec![
                                w.name.clone(),
                                w.owner.clone(),
                                w.template.clone(),
                                workspace_version(w),
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
        "Template:    {} version {} ({}){}",
        w.template,
        render::version_text(&w.template_version_name, &w.template_version_id),
        w.template_version_id,
        if w.outdated {
            "; outdated: `workspaces update` moves it to the active version"
        } else {
            ""
        }
    );
    if !w.automatic_updates.is_empty() {
        println!("Updates:     {}", w.automatic_updates);
    }
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
            render::table_time(w.claimed_at)
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

/// A workspace's version in a table, marked when it is not the active one.
fn workspace_version(w: &proto::Workspace) -> String {
    let v = render::version_text(&w.template_version_name, &w.template_version_id);
    if w.outdated {
        format!("{v} (outdated)")
    } else {
        v
    }
}

/// A build of `transition`; `yes`: a destroy was confirmed by -y (it is
/// asked for otherwise, once the workspace is known to exist); `update`:
/// a start on the active version.
async fn build(
    a: BuildArgs,
    transition: Transition,
    yes: bool,
    update: bool,
) -> Result<(), CliError> {
    let parameters = pairs("--param", &a.params)?;
    let mut c = client(&a.admin).await?;
    if update && parameters.is_empty() {
        let w = c
            .get_workspace(proto::GetWorkspaceRequest {
                name: a.name.clone(),
            })
            .await?
            .into_inner();
        // As Coder's `update`: nothing to build. (An older coordinator
        // sets no setting, and its every start moves the workspace.)
        if !w.outdated && !w.automatic_updates.is_empty() {
            eprintln!(
                "Workspace {:?} is on the template's active version ({}) already: nothing to do",
                a.name,
                render::version_text(&w.template_version_name, &w.template_version_id)
            );
            return Ok(());
        }
    }
    if transition == Transition::Destroy && !yes {
        // A missing workspace is reported as such, not asked about.
        c.get_workspace(proto::GetWorkspaceRequest {
            name: a.name.clone(),
        })
        .await?;
        confirm(
            &format!("delete workspace {:?}", a.name),
            "Its resources are destroyed.",
            false,
        )?;
    }
    let resp = c
        .build_workspace(proto::BuildWorkspaceRequest {
            name: a.name.clone(),
            transition: transition as i32,
            parameters,
            update,
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

/// A create that asked for a version or `always`: refused after the fact
/// when the coordinator is older than versions (it ignored both, and the
/// build is under way from the active version).
async fn check_versions_known(c: &mut Client, name: &str, job: &str) -> Result<(), CliError> {
    let w = c
        .get_workspace(proto::GetWorkspaceRequest {
            name: name.to_string(),
        })
        .await?
        .into_inner();
    if w.automatic_updates.is_empty() {
        return Err(CliError::Failed(format!(
            "create workspace {name:?}: the coordinator is older than this CLI and ignored \
             --template-version and --automatic-updates: the workspace is being built from the \
             active version (job {job}); upgrade the coordinator"
        )));
    }
    Ok(())
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
