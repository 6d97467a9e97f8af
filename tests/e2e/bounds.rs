//! Bounded fields: what a client may store is bounded at the edge, so no
//! row can grow a list answer past the message limit. Oversized tags and
//! log lines are refused naming the field and the limit; an oversized job
//! error is stored truncated with a marker; and the lists keep working.
//! Paging of every list call is in `paging`.

mod paging;

use std::collections::HashMap;
use std::process::Output;

use provisionerd::grpc::limits::{MAX_ERROR_BYTES, MAX_LOG_LINE_BYTES, MAX_TAGS};
use provisionerd::proto::{self, DaemonState, JobOutcome};
use tonic::Code;

use crate::common::Coord;
use crate::large::quiet_stack;
use crate::raw::RawDaemon;
use crate::{QUICK, template};

/// Runs an admin command against `coord`; it must succeed.
pub async fn cli(coord: &Coord, args: &[&str]) -> Output {
    let out = coord.run_cli(args).await;
    assert!(
        out.status.success(),
        "provisionerd {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout as JSON.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn tags(n: usize, value_len: usize) -> HashMap<String, String> {
    (0..n)
        .map(|i| (format!("t{i:05}"), "v".repeat(value_len)))
        .collect()
}

fn refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, needle: &str) {
    let st = r.expect_err("refused");
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(st.message().contains(needle), "{needle:?} not in {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_tags_are_refused_and_keys_list_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let mut admin = coord.admin().await;
    let create = |name: &str, tags| proto::CreateKeyRequest {
        name: name.into(),
        tags,
    };
    // 10 000 tags of 256 bytes: 2.7 MB, one message; two such keys used to
    // break `keys list` for good.
    for name in ["many1", "many2"] {
        refused(
            admin.create_key(create(name, tags(10_000, 256))).await,
            &format!("create key \"{name}\": 10000 tags: at most {MAX_TAGS} are allowed"),
        );
    }
    refused(
        admin.create_key(create("huge", tags(1, 1 << 20))).await,
        "create key \"huge\": tag \"t00000\": value must be at most 256",
    );
    // The most a key may carry is taken, and listed.
    for name in ["full1", "full2"] {
        admin
            .create_key(create(name, tags(MAX_TAGS, 256)))
            .await
            .expect("a key at the limits");
    }
    let keys = admin
        .list_keys(proto::ListKeysRequest::default())
        .await
        .expect("keys list works")
        .into_inner()
        .keys;
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["full1", "full2"]);
    assert_eq!(keys[0].tags.len(), MAX_TAGS);
    let listed = json(&cli(&coord, &["keys", "list", "-o", "json"]).await);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // A template push is bounded the same way: tags and variables.
    let dir = template(tmp.path(), "t", QUICK);
    let archive = provisionerd::archive::tar_dir(&dir).unwrap();
    let push = |tags, variables| proto::PushTemplateRequest {
        name: "t".into(),
        provisioner_tags: tags,
        variables,
        ..Default::default()
    };
    refused(
        coord
            .push_archive(push(tags(10_000, 256), HashMap::new()), &archive)
            .await,
        "push template \"t\": 10000 tags: at most 64",
    );
    let big_var = HashMap::from([("v".to_string(), "x".repeat(3 << 20))]);
    refused(
        coord
            .push_archive(push(HashMap::new(), big_var), &archive)
            .await,
        "push template \"t\": variables \"v\" is 3145728 bytes, over the limit of 65536 bytes",
    );
    coord.stop().await;
}

/// A raw daemon that claims a new workspace's build job.
async fn claimed_job(coord: &Coord, raw: &mut RawDaemon, workspace: &str) -> String {
    let job = coord.create_workspace(workspace, "t", "alice", &[]).await;
    let offer = raw.claim().await;
    assert_eq!(offer.job_id, job);
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_job_errors_are_stored_truncated_and_jobs_list_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, key) = quiet_stack(tmp.path()).await;
    let mut raw = RawDaemon::open(&coord, &key, "raw", DaemonState::Idle).await;
    let mut jobs = Vec::new();
    // Two 2.5 MB errors: together over the 4 MiB message limit.
    for ws in ["w1", "w2"] {
        let job = claimed_job(&coord, &mut raw, ws).await;
        let error = format!("{}END", "e".repeat(2_500_000 - 3));
        raw.finish(
            proto::FinishJobRequest {
                job_id: job.clone(),
                outcome: JobOutcome::Failed as i32,
                error,
                ..Default::default()
            },
            None,
        )
        .await
        .expect("the finish is taken");
        jobs.push(job);
    }
    let marker = " … [truncated, 2500000 bytes in all]";
    let listed = coord
        .admin()
        .await
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .expect("jobs list works")
        .into_inner()
        .jobs;
    for id in &jobs {
        let job = listed.iter().find(|j| &j.id == id).expect("listed");
        assert_eq!(job.status, "failed");
        assert!(job.error.len() <= MAX_ERROR_BYTES, "{}", job.error.len());
        assert!(job.error.starts_with("eeee"), "the start is kept");
        assert!(
            job.error.ends_with(marker),
            "{}",
            &job.error[job.error.len() - 80..]
        );
        let shown = json(&cli(&coord, &["jobs", "show", id, "-o", "json"]).await);
        assert_eq!(shown["error"], job.error.as_str());
    }
    let all = json(&cli(&coord, &["jobs", "list", "-o", "json"]).await);
    assert_eq!(
        all.as_array().unwrap().len(),
        3,
        "two builds and the import"
    );
    coord.stop().await;
}

fn line(seq: u64, output: String) -> proto::LogLine {
    proto::LogLine {
        seq,
        created_at: 1,
        level: proto::LogLevel::Info as i32,
        source: proto::LogSource::Terraform as i32,
        stage: "Applying".into(),
        output,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_log_line_is_refused_and_jobs_logs_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, key) = quiet_stack(tmp.path()).await;
    let mut raw = RawDaemon::open(&coord, &key, "raw", DaemonState::Idle).await;
    let job = claimed_job(&coord, &mut raw, "w").await;
    let secret = raw.secret(&job);
    let update = |logs| proto::UpdateJobRequest {
        job_id: job.clone(),
        logs,
        job_secret: secret.clone(),
    };
    // The daemon splits lines at 64 KiB; a 3.5 MB line is refused whole,
    // with the batch it came in (nothing of it stored).
    let batch = vec![line(1, "first".into()), line(2, "x".repeat(3_500_000))];
    refused(
        raw.client.update_job(update(batch)).await,
        &format!(
            "update job {job}: log line 2 output is 3500000 bytes, over the limit of {MAX_LOG_LINE_BYTES} bytes"
        ),
    );
    assert_eq!(coord.job(&job).await.log_count, 0, "nothing stored");
    // The same lines as the daemon ships them: split at the limit.
    let batch = vec![
        line(1, "first".into()),
        line(2, "x".repeat(MAX_LOG_LINE_BYTES)),
        line(3, "y".into()),
    ];
    let stored = raw
        .client
        .update_job(update(batch))
        .await
        .expect("lines at the limit are taken")
        .into_inner()
        .stored_seq;
    assert_eq!(stored, 3);
    let logs = coord.logs(&job).await;
    let lens: Vec<usize> = logs.iter().map(|l| l.output.len()).collect();
    assert_eq!(lens, [5, MAX_LOG_LINE_BYTES, 1]);
    let printed = cli(&coord, &["jobs", "logs", &job]).await;
    assert!(String::from_utf8_lossy(&printed.stdout).contains("first"));
    coord.stop().await;
}
