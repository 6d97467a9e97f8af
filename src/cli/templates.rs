//! `templates push|show|list` (`templates versions`: `versions.rs`).

use serde_json::json;

use super::columns::Columns;
use super::{CliError, client, pages, pairs, print_json, render, template_show, wait_for_job};
use crate::config::{Output, TemplatesCmd};
use crate::proto;

const HEADERS: [&str; 4] = ["NAME", "ACTIVE VERSION", "VARIABLES", "CREATED"];

pub async fn templates(cmd: TemplatesCmd) -> Result<(), CliError> {
    match cmd {
        TemplatesCmd::Push {
            name,
            dir,
            tags,
            vars,
            version_name,
            message,
            activate,
            wait,
            admin,
        } => {
            let provisioner_tags = pairs("--provisioner-tag", &tags)?;
            let versioned = version_name.is_some() || message.is_some() || !activate;
            let variables = pairs("--var", &vars)?;
            let archive = crate::archive::tar_dir(&dir)
                .map_err(|e| CliError::Usage(format!("push template {name:?}: {e}")))?;
            let mut c = client(&admin).await?;
            let header = proto::PushTemplateRequest {
                name: name.clone(),
                provisioner_tags,
                variables,
                version_name: version_name.unwrap_or_default(),
                message: message.unwrap_or_default(),
                no_activate: !activate,
                ..Default::default()
            };
            // In chunks: an archive may be larger than one message.
            let parts = crate::chunk::push_template_parts(header, &archive);
            let resp = c
                .push_template(tokio_stream::iter(parts))
                .await?
                .into_inner();
            if resp.template_version_name.is_empty() && versioned {
                // A coordinator from before versions had names ignores
                // the fields it does not know: say so rather than let an
                // unwanted version go live unnoticed.
                return Err(CliError::Failed(format!(
                    "push template {name:?}: the coordinator is older than this CLI and ignored \
                     --name, --message and --activate=false: version {} was pushed and becomes \
                     active when its import (job {}) succeeds; upgrade the coordinator",
                    resp.template_version_id, resp.job_id
                )));
            }
            eprintln!(
                "Pushed template {name:?} version {} ({}); import job {}{}",
                resp.template_version_name,
                resp.template_version_id,
                resp.job_id,
                if activate {
                    ""
                } else {
                    "; it stays inactive until promoted"
                }
            );
            if wait {
                wait_for_job(&mut c, &resp.job_id).await?;
                // Imported: say whether it is the active version now, and
                // why not (the activation rule may have passed it over).
                let t = c
                    .get_template(proto::GetTemplateRequest { name: name.clone() })
                    .await?
                    .into_inner();
                if t.active_version_id == resp.template_version_id {
                    eprintln!("Version {} is active", resp.template_version_name);
                } else {
                    eprintln!(
                        "Version {} is imported but not active (active: {}{}); make it active with `provisionerd templates versions promote {name} {}`",
                        resp.template_version_name,
                        render::version_text(&t.active_version_name, &t.active_version_id),
                        if activate {
                            "; a promote or a newer push changed the active version since this push"
                        } else {
                            ", as --activate=false asked"
                        },
                        resp.template_version_name
                    );
                }
            } else {
                println!("{}", resp.job_id);
            }
        }
        TemplatesCmd::Versions(cmd) => super::versions::versions(cmd).await?,
        TemplatesCmd::Show { name, out, admin } => {
            let mut c = client(&admin).await?;
            template_show::show(&mut c, &name, out.output).await?;
        }
        TemplatesCmd::List {
            page,
            out,
            cols,
            admin,
        } => {
            let columns = Columns::pick("templates list", &HEADERS, &cols.columns)?;
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
                columns.print(
                    &HEADERS,
                    ts.iter()
                        .map(|t| {
                            let vars: Vec<_> = t.variables.iter().map(|v| v.name.clone()).collect();
                            vec![
                                t.name.clone(),
                                render::version_text(&t.active_version_name, &t.active_version_id),
                                vars.join(","),
                                render::table_time(t.created_at),
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
