//! Offers lapse: a session that asks for jobs and never acknowledges them
//! holds at most one offer, and only for `serve --offer-timeout`; then the
//! job goes back to the queue for a daemon that runs it, and the hoarding
//! session is told. While the offer stands, `jobs show` and `daemons list`
//! say so.

use std::time::{Duration, Instant};

use provisionerd::proto::{
    Acquire, DaemonState, coordinator_message::Msg as Out, daemon_message::Msg as In,
};
use serde_json::Value;
use tonic::Code;

use crate::cli::{run, stderr};
use crate::common::Coord;
use crate::common::procs;
use crate::raw::RawDaemon;
use crate::{QUICK, template};

const OFFER_TIMEOUT: Duration = Duration::from_secs(6);

/// `provisionerd ARGS -o json` against the coordinator, parsed.
async fn cli_json(url: &str, token: &str, args: &[&str]) -> Value {
    let env = [("PROVISIONERD_URL", url), ("PROVISIONERD_TOKEN", token)];
    let out = run(&[args, &["-o", "json"]].concat(), &env).await;
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

async fn daemon_entry(url: &str, token: &str, name: &str) -> Value {
    let all = cli_json(url, token, &["daemons", "list"]).await;
    all.as_array()
        .and_then(|ds| ds.iter().find(|d| d["name"] == name).cloned())
        .unwrap_or_else(|| panic!("daemon {name} not listed: {all}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unacknowledged_offer_expires_and_an_honest_daemon_runs_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let timeout = format!("{}s", OFFER_TIMEOUT.as_secs());
    let (_serve, url, token) =
        procs::serve_with(&data, "127.0.0.1:0", "60s", &["--offer-timeout", &timeout]).await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let first = coord
        .push("first", &template(tmp.path(), "first", QUICK), &[])
        .await;

    let mut hoarder = RawDaemon::open(&coord, &key, "hoarder", DaemonState::Idle).await;
    // Before the Acquire: the coordinator's timer starts later, when it
    // offers, so the time from here is a strict lower bound.
    let offered_at = Instant::now();
    hoarder.send(In::Acquire(Acquire {})).await;
    let offer = hoarder.offer().await;
    assert_eq!(offer.job_id, first);
    // Another job, and more Acquires while the offer stands: they must not
    // bring the hoarder a second offer.
    let second = coord
        .push("second", &template(tmp.path(), "second", QUICK), &[])
        .await;
    for _ in 0..3 {
        hoarder.send(In::Acquire(Acquire {})).await;
    }

    // While it stands, the CLI says so: the job is offered to the hoarder,
    // the hoarder is not idle.
    let shown = cli_json(&url, &token, &["jobs", "show", &first]).await;
    assert_eq!(
        (&shown["status"], &shown["offered_to"]),
        (&Value::from("pending"), &Value::from("hoarder")),
        "{shown}"
    );
    let why = shown["routing"][0].as_str().unwrap_or_default();
    assert!(why.contains("offered to daemon hoarder"), "{shown}");
    let listed = daemon_entry(&url, &token, "hoarder").await;
    assert_eq!(
        (&listed["status"], &listed["current_job_id"]),
        (&Value::from("offered"), &Value::from(first.as_str())),
        "{listed}"
    );
    let shown = cli_json(&url, &token, &["jobs", "show", &second]).await;
    assert_eq!(shown["offered_to"], "", "one offer per session: {shown}");

    // An honest daemon takes the second job at once, and the first once
    // its offer has expired.
    let _honest = procs::start(&url, &key, "honest", &tmp.path().join("honest"), &[]);
    match hoarder.next().await {
        Out::CancelJob(c) => assert_eq!(c.job_id, first, "the withdrawal names the job"),
        other => panic!("expected the withdrawal of {first}, and nothing before: {other:?}"),
    }
    assert!(
        offered_at.elapsed() >= OFFER_TIMEOUT,
        "withdrawn only once the timeout passed: after {:?}",
        offered_at.elapsed()
    );
    let listed = daemon_entry(&url, &token, "hoarder").await;
    assert_eq!(listed["status"], "idle", "{listed}");

    // Acknowledging now is too late: refused on the session and on the
    // ownership confirmation.
    hoarder.ack(&first).await;
    match hoarder.next().await {
        Out::CancelJob(c) => assert_eq!(c.job_id, first),
        other => panic!("expected the late ack answered with CancelJob: {other:?}"),
    }
    let err = hoarder.update(&first).await.expect_err("not the hoarder's");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    for job in [&first, &second] {
        let done = coord.wait_succeeded(job).await;
        assert_eq!(done.daemon, "honest", "{done:?}");
    }
    // Everything pushed to the hoarder has been read: nothing else came.
    let more = tokio::time::timeout(Duration::from_millis(200), hoarder.inbound.message()).await;
    assert!(more.is_err(), "nothing more for the hoarder: {more:?}");
}
