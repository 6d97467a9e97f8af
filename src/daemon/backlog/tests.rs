use super::*;
use crate::daemon::spool::{self, Reader};

fn policy() -> BatchPolicy {
    BatchPolicy {
        max_pending_lines: 100,
        ..BatchPolicy::default()
    }
}

fn line(i: u64) -> LogLine {
    LogLine {
        output: format!("line-{i}"),
        ..Default::default()
    }
}

/// Confirms batch after batch, as a coordinator would, checking that
/// every line arrives once and in order; returns the last seq.
fn deliver(b: &mut Backlog, from: u64, now: Instant) -> u64 {
    let mut expect = from;
    while !b.is_empty() {
        let batch = b.batch();
        assert!(!batch.is_empty());
        for l in &batch {
            assert_eq!(
                (l.seq, l.output.clone()),
                (expect, format!("line-{expect}"))
            );
            expect += 1;
        }
        b.ack(batch.last().unwrap().seq, now).unwrap();
    }
    expect - 1
}

#[test]
fn lines_past_the_bound_are_spooled_and_delivered_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut b = Backlog::new(policy(), tmp.path().to_path_buf(), "j1");
    let file = spool::path(tmp.path(), "j1");
    for i in 1..=100 {
        b.push(line(i), now).unwrap();
    }
    assert!(!file.exists(), "within the bound nothing touches the disk");
    for i in 101..=1000 {
        b.push(line(i), now).unwrap();
        assert!(b.accepting());
    }
    assert_eq!((b.numbered(), b.spooled()), (1000, 900));
    assert!(b.batcher.pending().count() <= 100, "memory stays bounded");

    // The file holds every unconfirmed line, memory's too: a daemon
    // killed now leaves a spool that continues the coordinator's copy.
    let mut r = Reader::open(&file).unwrap().unwrap();
    let on_disk: Vec<u64> = std::iter::from_fn(|| r.next().unwrap())
        .map(|l| l.seq)
        .collect();
    assert_eq!(on_disk, (1..=1000).collect::<Vec<_>>());

    // Part of what was sent is confirmed; more lines keep coming.
    b.ack(50, now).unwrap();
    assert_eq!(b.spooled(), 850, "memory refilled from the spool");
    for i in 1001..=1200 {
        b.push(line(i), now).unwrap();
    }
    assert_eq!(deliver(&mut b, 51, now), 1200);
    assert!(
        !file.exists(),
        "the spool goes once everything is confirmed"
    );

    // Back under the bound, lines stay in memory again.
    b.push(line(1201), now).unwrap();
    assert!(!file.exists());
    assert_eq!(deliver(&mut b, 1201, now), 1201);
}

#[test]
fn a_spool_that_cannot_be_written_holds_the_line_and_pauses_reading() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where the spool directory should be.
    let blocked = tmp.path().join("spool");
    std::fs::write(&blocked, "").unwrap();
    let now = Instant::now();
    let mut b = Backlog::new(policy(), blocked, "j1");
    for i in 1..=100 {
        b.push(line(i), now).unwrap();
    }
    let err = b.push(line(101), now).unwrap_err().to_string();
    assert!(err.contains("log spool"), "{err}");
    assert!(!b.accepting(), "the runner waits instead of losing lines");
    b.ack(50, now).unwrap();
    assert!(b.accepting());
    b.push(line(102), now).unwrap();
    assert_eq!(deliver(&mut b, 51, now), 102);
}

/// The seqs and outputs in job `j1`'s spool under `dir`.
fn spooled(dir: &std::path::Path) -> Vec<(u64, String)> {
    let mut r = Reader::open(&spool::path(dir, "j1")).unwrap().unwrap();
    std::iter::from_fn(|| r.next().unwrap())
        .map(|l| (l.seq, l.output))
        .collect()
}

#[test]
fn giving_up_keeps_every_unconfirmed_line_on_disk_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Instant::now();
    // Within the memory bound: nothing on disk until persisted.
    let mut b = Backlog::new(policy(), tmp.path().to_path_buf(), "j1");
    for i in 1..=30 {
        b.push(line(i), now).unwrap();
    }
    b.ack(10, now).unwrap();
    let rest = (31..=33).map(line).collect();
    let file = b.persist(rest).unwrap().expect("a spool");
    assert_eq!(file, spool::path(tmp.path(), "j1"));
    let want: Vec<(u64, String)> = (11..=33).map(|i| (i, format!("line-{i}"))).collect();
    assert_eq!(spooled(tmp.path()), want);

    // Spilled: memory, then the spool's unread lines, then the rest.
    let mut b = Backlog::new(policy(), tmp.path().to_path_buf(), "j1");
    for i in 1..=250 {
        b.push(line(i), now).unwrap();
    }
    b.ack(60, now).unwrap();
    assert!(b.spooled() > 0);
    b.persist(vec![line(251)]).unwrap();
    let want: Vec<(u64, String)> = (61..=251).map(|i| (i, format!("line-{i}"))).collect();
    assert_eq!(spooled(tmp.path()), want);

    // Everything confirmed: nothing to keep, no file written.
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Backlog::new(policy(), tmp.path().to_path_buf(), "j1");
    b.push(line(1), now).unwrap();
    b.ack(1, now).unwrap();
    assert_eq!(b.persist(Vec::new()).unwrap(), None);
    assert!(!spool::path(tmp.path(), "j1").exists());
}

#[test]
fn a_burst_past_the_bound_is_spooled_at_its_flush_and_delivered_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut b = Backlog::new(policy(), tmp.path().to_path_buf(), "j1");
    for i in 1..=300 {
        b.push_buffered(line(i), now);
    }
    // Taken, not written yet: the burst goes to disk in one write.
    assert!(!spool::path(tmp.path(), "j1").exists());
    assert!(!b.is_empty());
    b.flush(now).unwrap();
    // Memory's copies first, then the burst: the file continues exactly
    // where the coordinator's copy will end.
    let want: Vec<(u64, String)> = (1..=300).map(|i| (i, format!("line-{i}"))).collect();
    assert_eq!(spooled(tmp.path()), want);
    assert_eq!(b.spooled(), 200);
    assert_eq!(deliver(&mut b, 1, now), 300);
    assert!(!spool::path(tmp.path(), "j1").exists());
}

#[test]
fn a_burst_the_spool_cannot_take_is_held_whole_and_pauses_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let blocked = tmp.path().join("spool");
    std::fs::write(&blocked, "").unwrap();
    let now = Instant::now();
    let mut b = Backlog::new(policy(), blocked, "j1");
    for i in 1..=150 {
        b.push_buffered(line(i), now);
    }
    assert!(b.taking_more());
    let err = b.flush(now).unwrap_err().to_string();
    assert!(err.contains("log spool"), "{err}");
    assert!(!b.accepting() && !b.taking_more(), "the runner waits");
    // Confirmed lines make room: the held burst moves into memory.
    b.ack(60, now).unwrap();
    assert!(b.accepting());
    b.push(line(151), now).unwrap();
    assert_eq!(deliver(&mut b, 61, now), 151);
}

/// The output length of a long line in these tests: a whole one.
const LONG: usize = crate::grpc::MAX_LOG_LINE_BYTES;

#[test]
fn a_burst_of_long_lines_stops_at_the_spill_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let mut b = Backlog::new(policy(), tmp.path().to_path_buf(), "j1");
    let long = |i: u64| {
        let digits = i.to_string();
        LogLine {
            output: "0".repeat(LONG - digits.len()) + &digits,
            ..Default::default()
        }
    };
    let mut i = 0;
    while b.taking_more() {
        i += 1;
        b.push_buffered(long(i), now);
        assert!(i < 1000, "a burst never stops");
    }
    b.flush(now).unwrap();
    // Memory took its share; the spill held about SPILL_BYTES, no more.
    let spilled = b.spooled() as usize * LONG;
    assert!(
        (SPILL_BYTES..SPILL_BYTES + LONG).contains(&spilled),
        "{spilled} bytes"
    );
    assert!(b.taking_more());
    assert_eq!(deliver_long(&mut b, now), i);
}

/// Like `deliver`, for lines whose output is their seq, zero-padded.
fn deliver_long(b: &mut Backlog, now: Instant) -> u64 {
    let mut expect = 1;
    while !b.is_empty() {
        let batch = b.batch();
        for l in &batch {
            assert_eq!(l.seq, expect);
            assert_eq!(l.output.trim_start_matches('0'), expect.to_string());
            expect += 1;
        }
        b.ack(batch.last().unwrap().seq, now).unwrap();
    }
    expect - 1
}
