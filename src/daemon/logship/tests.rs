use super::*;
use crate::daemon::spool;

static SECRET: std::sync::LazyLock<Secret> = std::sync::LazyLock::new(|| Secret::new("pdj_j1"));

/// A client whose every call fails as with a coordinator that is down.
fn unreachable() -> Client {
    // Port 1 on loopback: nothing listens, connecting is refused.
    crate::daemon::rpc::test_client("http://127.0.0.1:1")
}

/// A shipper for job `j1`, started now.
fn shipper_for<'a>(
    client: &'a Client,
    cancel: &'a CancellationToken,
    lease_ms: &'a AtomicU64,
) -> Shipper<'a> {
    Shipper {
        client,
        job_id: "j1",
        secret: &SECRET,
        job_cancel: cancel,
        started: Instant::now(),
        lease_ms,
        metrics: crate::daemon::Metrics::new("t").0,
    }
}

fn entry(i: usize) -> LogEntry {
    LogEntry {
        created_at_ms: 0,
        level: Level::Info,
        source: Source::Terraform,
        stage: "Applying".into(),
        output: format!("line-{i}"),
    }
}

#[test]
fn heartbeats_fit_several_times_in_the_lease() {
    assert_eq!(heartbeat(Duration::ZERO), HEARTBEAT);
    assert_eq!(heartbeat(Duration::from_secs(3)), Duration::from_secs(1));
    assert_eq!(heartbeat(Duration::from_secs(60)), HEARTBEAT);
    assert_eq!(heartbeat(Duration::from_millis(1)), MIN_HEARTBEAT);
}

#[tokio::test(start_paused = true)]
async fn a_lease_without_a_confirmed_update_interrupts_the_job_once_known() {
    let client = unreachable();
    let tmp = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let lease_ms = AtomicU64::new(0);
    let shipper = shipper_for(&client, &cancel, &lease_ms);
    let mut progress = Progress::new(tmp.path().to_path_buf(), "j1");
    // The sender stays open: terraform is still running.
    let (_tx, mut rx) = mpsc::channel(16);
    let t0 = Instant::now();
    let ship = shipper.ship(&mut rx, &mut progress);
    tokio::pin!(ship);
    // No lease known: however long the outage, the job goes on.
    tokio::select! {
        r = &mut ship => panic!("shipping ended: {r:?}"),
        () = cancel.cancelled() => panic!("interrupted without a known lease"),
        () = tokio::time::sleep(Duration::from_secs(60)) => {}
    }
    // A Welcome tells the lease: it counts from the start of the job,
    // which is long past, so the job is interrupted at the next wake.
    lease_ms.store(3_000, Ordering::Relaxed);
    tokio::select! {
        r = &mut ship => panic!("shipping ended: {r:?}"),
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(60)) => panic!("not interrupted"),
    }
    let waited = t0.elapsed();
    assert!(waited <= Duration::from_secs(71), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn the_lease_counts_from_the_start_of_the_job() {
    let client = unreachable();
    let tmp = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let lease_ms = AtomicU64::new(3_000);
    let shipper = shipper_for(&client, &cancel, &lease_ms);
    let mut progress = Progress::new(tmp.path().to_path_buf(), "j1");
    let (_tx, mut rx) = mpsc::channel(16);
    let t0 = Instant::now();
    tokio::select! {
        r = shipper.ship(&mut rx, &mut progress) => panic!("shipping ended: {r:?}"),
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(Duration::from_secs(60)) => panic!("not interrupted"),
    }
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3_500),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_never_holds_terraform_up_lines_go_to_the_spool() {
    let client = unreachable();
    let tmp = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let lease_ms = AtomicU64::new(0);
    let shipper = shipper_for(&client, &cancel, &lease_ms);
    let mut progress = Progress::new(tmp.path().to_path_buf(), "j1");
    let (tx, mut rx) = mpsc::channel(LOG_TEST_CHANNEL);
    let total = 3 * BatchPolicy::default().max_pending_lines;
    let runner = tokio::spawn(async move {
        for i in 1..=total {
            tx.send(entry(i)).await.unwrap();
        }
        // Keep the channel open: terraform has not exited.
        tx
    });
    let tx = tokio::select! {
        r = shipper.ship(&mut rx, &mut progress) => panic!("shipping ended: {r:?}"),
        tx = runner => tx.unwrap(),
        () = tokio::time::sleep(Duration::from_secs(60)) => panic!("the runner was held up"),
    };
    drop(tx);
    // Every line taken is on disk, in order, memory's too.
    let mut r = spool::Reader::open(&spool::path(tmp.path(), "j1"))
        .unwrap()
        .expect("a spool file");
    let mut n = 0;
    while let Some(l) = r.next().unwrap() {
        n += 1;
        assert_eq!((l.seq, l.output), (n, format!("line-{n}")));
    }
    // The last lines may still sit in the channel.
    assert!(n as usize + LOG_TEST_CHANNEL >= total, "{n} lines spooled");
}

const LOG_TEST_CHANNEL: usize = 1024;

#[test]
fn runner_lines_map_to_wire_enums() {
    let l = log_line(LogEntry {
        created_at_ms: 42,
        level: Level::Warn,
        source: Source::Terraform,
        stage: "Applying".into(),
        output: "done".into(),
    });
    assert_eq!(l.level, LogLevel::Warn as i32);
    assert_eq!(l.source, LogSource::Terraform as i32);
    assert_eq!(
        (l.created_at, l.stage.as_str(), l.output.as_str()),
        (42, "Applying", "done")
    );
}

#[test]
fn a_huge_output_line_becomes_continuation_lines_that_fit_in_a_message() {
    use crate::daemon::batch::{BatchPolicy, Batcher};
    use prost::Message;
    // 10 MiB of output on one line, with 3-byte characters so a cut may
    // land inside one: it is split at a character boundary, never cut.
    let output: String = "€abcdefgh".repeat(10 * 1024 * 1024 / 11);
    let lines = log_lines(LogEntry {
        created_at_ms: 7,
        level: Level::Info,
        source: Source::Terraform,
        stage: "Applying".into(),
        output: output.clone(),
    });
    assert!(lines.len() > 150, "{} lines", lines.len());
    assert!(lines.iter().all(|l| l.output.len() <= MAX_LOG_LINE_BYTES));
    assert!(
        lines
            .iter()
            .all(|l| (l.stage.as_str(), l.created_at) == ("Applying", 7))
    );
    let joined: String = lines.iter().map(|l| l.output.as_str()).collect();
    assert_eq!(joined, output, "nothing truncated or dropped");

    // Every UpdateJob the batcher makes of them fits in one message.
    let mut batcher = Batcher::new(BatchPolicy::default());
    let now = Instant::now();
    for l in lines {
        batcher.push(l, now);
    }
    let mut sent = 0;
    while !batcher.is_empty() {
        let batch = batcher.batch();
        let last = batch.last().unwrap().seq;
        let req = UpdateJobRequest {
            job_id: "j1".into(),
            logs: batch,
            job_secret: SECRET.expose().to_string(),
        };
        assert!(req.encoded_len() < crate::grpc::MAX_MESSAGE_BYTES / 4);
        batcher.ack(last);
        sent = last;
    }
    assert_eq!(sent, batcher.numbered());

    // A short line stays one line.
    assert_eq!(log_lines(entry(1)).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn lines_of_an_abandoned_shipping_stay_with_the_caller() {
    let client = unreachable();
    let tmp = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    let lease_ms = AtomicU64::new(0);
    let shipper = shipper_for(&client, &cancel, &lease_ms);
    let mut progress = Progress::new(tmp.path().to_path_buf(), "j1");
    let (tx, mut rx) = mpsc::channel(16);
    for i in 1..=5 {
        tx.send(entry(i)).await.unwrap();
    }
    drop(tx);
    // The caller stops waiting (its report budget ran out).
    tokio::select! {
        r = shipper.ship(&mut rx, &mut progress) => panic!("shipping ended: {r:?}"),
        () = tokio::time::sleep(Duration::from_secs(10)) => {}
    }
    assert_eq!(progress.backlog.numbered(), 5);
    let file = progress.backlog.persist(Vec::new()).unwrap().unwrap();
    let mut r = spool::Reader::open(&file).unwrap().unwrap();
    let kept: Vec<u64> = std::iter::from_fn(|| r.next().unwrap())
        .map(|l| l.seq)
        .collect();
    assert_eq!(kept, [1, 2, 3, 4, 5]);
}
