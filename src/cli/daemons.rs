//! `daemons list`: filtered by status and tags on the coordinator (the
//! list is paged, so filtering here would make pages short or empty), and
//! offline daemons older than `--max-age` left out.

use serde_json::json;

use super::columns::Columns;
use super::render::{self, tags_text};
use super::{CliError, client, pages, pairs, print_json};
use crate::config::{DaemonsCmd, Output};
use crate::proto;

const HEADERS: [&str; 6] = ["NAME", "STATUS", "TAGS", "CURRENT JOB", "KEY", "LAST SEEN"];

pub async fn daemons(cmd: DaemonsCmd) -> Result<(), CliError> {
    let DaemonsCmd::List {
        status,
        tags,
        max_age,
        page,
        out,
        cols,
        admin,
    } = cmd;
    let columns = Columns::pick("daemons list", &HEADERS, &cols.columns)?;
    let tags = pairs("--tag", &tags)?;
    let status: Vec<String> = status
        .iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let c = client(&admin).await?;
    let (ds, next) = pages::collect(pages::limit(page.limit), page.after, |limit, after| {
        let mut c = c.clone();
        let (status, tags) = (status.clone(), tags.clone());
        async move {
            let r = c
                .list_daemons(proto::ListDaemonsRequest {
                    limit,
                    after,
                    status,
                    tags,
                    max_age_ms,
                })
                .await?
                .into_inner();
            Ok((r.daemons, r.next_cursor))
        }
    })
    .await?;
    // An older coordinator ignores these filters and lists every daemon:
    // refuse rather than pass the others on as matches.
    let excluded = |d: &proto::Daemon| {
        (!status.is_empty() && !status.contains(&d.status))
            || tags.iter().any(|(k, v)| d.tags.get(k) != Some(v))
    };
    if let Some(d) = ds.iter().find(|d| excluded(d)) {
        return Err(CliError::Failed(format!(
            "daemons list: the coordinator returned daemon {:?} ({}), which --status/--tag \
             excludes: it is older than this CLI and ignores them; upgrade it",
            d.name, d.status
        )));
    }
    if out.output == Output::Json {
        print_json(&json!(
            ds.iter().map(render::daemon_json).collect::<Vec<_>>()
        ));
    } else {
        columns.print(
            &HEADERS,
            ds.iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.status.clone(),
                        tags_text(&d.tags),
                        d.current_job_id.clone(),
                        d.key_name.clone(),
                        render::table_time(d.last_seen_at),
                    ]
                })
                .collect(),
        );
    }
    pages::hint("daemons", &next);
    Ok(())
}
