//! Every list call answers in pages with a cursor: walking the pages lists
//! each row exactly once, in order, through the API and through the CLI;
//! and a page ends early by bytes, so even maximal rows never make an
//! answer outgrow a message.

use std::collections::HashMap;

use prost::Message;
use provisionerd::grpc::limits::{MAX_PAGE_BYTES, MAX_TAGS};
use provisionerd::proto::{self, DaemonState};

use super::{cli, json};
use crate::common::{Admin, Coord};
use crate::large::quiet_stack;
use crate::raw::RawDaemon;

/// Walks ListKeys with page size `limit`: every name, and each page's
/// encoded size.
async fn walk_keys(admin: &mut Admin, limit: u32) -> (Vec<String>, Vec<usize>) {
    let (mut names, mut sizes, mut after) = (Vec::new(), Vec::new(), String::new());
    loop {
        let page = admin
            .list_keys(proto::ListKeysRequest {
                limit,
                after: after.clone(),
            })
            .await
            .expect("a page of keys")
            .into_inner();
        sizes.push(page.encoded_len());
        names.extend(page.keys.into_iter().map(|k| k.name));
        if page.next_cursor.is_empty() {
            return (names, sizes);
        }
        assert_eq!(Some(&page.next_cursor), names.last(), "the last row's name");
        after = page.next_cursor;
    }
}

/// `-o json` rows' `field`, in order.
fn column(v: &serde_json::Value, field: &str) -> Vec<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|r| r[field].as_str().expect("a string").to_string())
        .collect()
}

/// The cursor the CLI's stderr hint names.
fn hint(out: &std::process::Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("More {what} follow: list them with --after ");
    err.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no hint in {err:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_of_keys_list_each_key_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let mut admin = coord.admin().await;
    // 250 keys at the limits (64 tags of 256 bytes, ~20 KB each): 5 MB
    // together, more than one message could ever hold.
    let tags: HashMap<String, String> = (0..MAX_TAGS)
        .map(|i| (format!("tag{i:02}"), "v".repeat(256)))
        .collect();
    let want: Vec<String> = (0..250).map(|i| format!("k{i:03}")).collect();
    for name in want.iter().rev() {
        admin
            .create_key(proto::CreateKeyRequest {
                name: name.clone(),
                tags: tags.clone(),
            })
            .await
            .expect("create key");
    }

    let (names, sizes) = walk_keys(&mut admin, 100).await;
    assert_eq!(names, want, "pages of 100: each key once, by name");
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    // The largest page the server allows ends by bytes, not rows.
    let (names, sizes) = walk_keys(&mut admin, 1000).await;
    assert_eq!(names, want, "pages capped by bytes: each key once, by name");
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(
        sizes.iter().all(|s| *s <= MAX_PAGE_BYTES + 64 * 1024),
        "{sizes:?}"
    );

    // The CLI: every key in one listing (paging inside), or a limit, a
    // hint naming the cursor, and the rest after it.
    let all = cli(&coord, &["keys", "list", "-o", "json"]).await;
    assert_eq!(column(&json(&all), "name"), want);
    assert!(all.stderr.is_empty(), "no hint when all are listed");
    let first = cli(&coord, &["keys", "list", "--limit", "120", "-o", "json"]).await;
    let head = column(&json(&first), "name");
    assert_eq!(head, want[..120]);
    let cursor = hint(&first, "keys");
    assert_eq!(cursor, want[119]);
    let rest = cli(&coord, &["keys", "list", "--after", &cursor, "-o", "json"]).await;
    assert_eq!(column(&json(&rest), "name"), want[120..]);
    let table = cli(&coord, &["keys", "list", "--limit", "1"]).await;
    assert_eq!(hint(&table, "keys"), want[0]);
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_of_jobs_workspaces_templates_and_daemons_list_each_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, key) = quiet_stack(tmp.path()).await;
    let mut admin = coord.admin().await;
    let import = admin
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(import.len(), 1, "the import");
    // 250 pending builds (no daemon takes them), oldest first.
    let mut created = Vec::new();
    for i in 0..250 {
        created.push(
            coord
                .create_workspace(&format!("w{i:03}"), "t", "alice", &[])
                .await,
        );
    }
    let mut want_jobs: Vec<String> = created.iter().rev().cloned().collect();
    want_jobs.push(import[0].id.clone());

    // Jobs, newest first, through the API in pages of 100.
    let (mut ids, mut after) = (Vec::new(), String::new());
    loop {
        let page = admin
            .list_jobs(proto::ListJobsRequest {
                limit: 100,
                after: after.clone(),
                ..Default::default()
            })
            .await
            .expect("a page of jobs")
            .into_inner();
        assert!(page.jobs.len() <= 100);
        ids.extend(page.jobs.into_iter().map(|j| j.id));
        if page.next_cursor.is_empty() {
            break;
        }
        after = page.next_cursor;
    }
    assert_eq!(ids, want_jobs, "each job once, newest first");

    // The CLI: the runbook's `--limit 1000` gets all of them; a smaller
    // limit prints the cursor to continue from.
    let all = cli(&coord, &["jobs", "list", "--limit", "1000", "-o", "json"]).await;
    assert_eq!(column(&json(&all), "id"), want_jobs);
    let first = cli(&coord, &["jobs", "list", "--limit", "150", "-o", "json"]).await;
    assert_eq!(column(&json(&first), "id"), want_jobs[..150]);
    let cursor = hint(&first, "jobs");
    assert_eq!(cursor, want_jobs[149]);
    let rest = cli(
        &coord,
        &[
            "jobs", "list", "--after", &cursor, "--limit", "0", "-o", "json",
        ],
    )
    .await;
    assert_eq!(column(&json(&rest), "id"), want_jobs[150..]);
    let pending = cli(
        &coord,
        &[
            "jobs", "list", "--status", "pending", "--limit", "0", "-o", "json",
        ],
    )
    .await;
    assert_eq!(column(&json(&pending), "id"), want_jobs[..250]);

    // Workspaces by name, in pages of 100 through the API and all at once
    // through the CLI.
    let want_ws: Vec<String> = (0..250).map(|i| format!("w{i:03}")).collect();
    let (mut names, mut after) = (Vec::new(), String::new());
    loop {
        let page = admin
            .list_workspaces(proto::ListWorkspacesRequest {
                limit: 100,
                after: after.clone(),
                ..Default::default()
            })
            .await
            .expect("a page of workspaces")
            .into_inner();
        names.extend(page.workspaces.into_iter().map(|w| w.name));
        if page.next_cursor.is_empty() {
            break;
        }
        after = page.next_cursor;
    }
    assert_eq!(names, want_ws);
    let out = cli(&coord, &["workspaces", "list", "-o", "json"]).await;
    assert_eq!(column(&json(&out), "name"), want_ws);

    // Templates and daemons page the same way (a page of one row here).
    let dir = crate::template(tmp.path(), "t2", crate::QUICK);
    coord.push("t2", &dir, &[]).await;
    let first = cli(&coord, &["templates", "list", "--limit", "1", "-o", "json"]).await;
    assert_eq!(column(&json(&first), "name"), ["t"]);
    let rest = cli(
        &coord,
        &[
            "templates",
            "list",
            "--after",
            &hint(&first, "templates"),
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(column(&json(&rest), "name"), ["t2"]);
    let _r1 = RawDaemon::open(&coord, &key, "r1", DaemonState::Idle).await;
    let _r2 = RawDaemon::open(&coord, &key, "r2", DaemonState::Idle).await;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["daemons", "list", "--limit", "1", "-o", "json"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let out = cli(&coord, &args).await;
        seen.extend(column(&json(&out), "name"));
        if out.stderr.is_empty() {
            break;
        }
        after = Some(hint(&out, "daemons"));
    }
    assert_eq!(seen, ["d1", "r1", "r2"], "the stopped d1 is listed offline");
    coord.stop().await;
}
