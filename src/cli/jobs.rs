//! `jobs list|show|cancel|logs`.

use serde_json::json;

use super::columns::Columns;
use super::logs::print_logs;
use super::render::{self, job_json, tags_text};
use super::{CliError, cancel, client, pages, print_job, print_json};
use crate::config::{JobsCmd, Output};
use crate::proto;

const HEADERS: [&str; 9] = [
    "ID",
    "TYPE",
    "STATUS",
    "INITIATOR",
    "TAGS",
    "TARGET",
    "VERSION",
    "DAEMON",
    "CREATED",
];

pub async fn jobs(cmd: JobsCmd) -> Result<(), CliError> {
    match cmd {
        JobsCmd::List {
            status,
            initiator,
            limit,
            after,
            out,
            cols,
            admin,
        } => {
            let columns = Columns::pick("jobs list", &HEADERS, &cols.columns)?;
            let statuses: Vec<String> = status
                .iter()
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
            let c = client(&admin).await?;
            let initiator = initiator.unwrap_or_default();
            let (jobs, next) = pages::collect(pages::limit(Some(limit)), after, |limit, after| {
                let mut c = c.clone();
                let (statuses, initiator) = (statuses.clone(), initiator.clone());
                async move {
                    // One state goes in `status` too, so an older
                    // coordinator (which knows no `statuses`) filters it.
                    let status = match statuses.as_slice() {
                        [one] => one.clone(),
                        _ => String::new(),
                    };
                    let r = c
                        .list_jobs(proto::ListJobsRequest {
                            status,
                            initiator,
                            limit,
                            after,
                            statuses,
                        })
                        .await?
                        .into_inner();
                    Ok((r.jobs, r.next_cursor))
                }
            })
            .await?;
            // An older coordinator ignores `statuses` and lists every job:
            // refuse rather than pass the others on as matches (a pipeline
            // into `jobs cancel -y -` would act on them).
            if let Some(j) = jobs
                .iter()
                .find(|j| !statuses.is_empty() && !statuses.contains(&j.status))
            {
                return Err(CliError::Failed(format!(
                    "jobs list: the coordinator returned job {} ({}), which --status \
                     excludes: it is older than this CLI and ignores several states; \
                     upgrade it, or give one state",
                    j.id, j.status
                )));
            }
            if out.output == Output::Json {
                print_json(&json!(jobs.iter().map(job_json).collect::<Vec<_>>()));
            } else {
                columns.print(
                    &HEADERS,
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
                                render::version_text(
                                    &j.template_version_name,
                                    &j.template_version_id,
                                ),
                                j.daemon.clone(),
                                render::table_time(j.created_at),
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
            yes,
            out,
            admin,
        } => {
            let mut c = client(&admin).await?;
            cancel::cancel_all(&mut c, &ids, wait, yes.yes, out.output).await?;
        }
        JobsCmd::Logs { id, follow, admin } => {
            let mut c = client(&admin).await?;
            print_logs(&mut c, &id, follow).await?;
        }
    }
    Ok(())
}
