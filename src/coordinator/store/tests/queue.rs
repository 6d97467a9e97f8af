//! The queue index (`tagsets.rs`, `offers.rs`): which jobs a daemon's
//! claim finds, in which order, exactly once, and on a database written
//! before the index existed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::super::{NewImport, Store};
use crate::chunk::sha256_hex;
use crate::tags::{Tags, parse_pairs};

fn tags(s: &str) -> Tags {
    let pairs: Vec<&str> = s.split(',').filter(|p| !p.is_empty()).collect();
    parse_pairs(&pairs).unwrap()
}

/// A pending import job routed by `job_tags`, initiated by `initiator`.
fn enqueue(store: &Store, name: &str, job_tags: &str, initiator: &str) -> String {
    store
        .push_template(
            name,
            name.as_bytes(),
            &Tags::new(),
            &BTreeMap::new(),
            initiator,
            &NewImport {
                meta_json: None,
                tags: tags(job_tags),
                ..Default::default()
            },
        )
        .unwrap()
        .1
}

/// Every job `daemon` claims, until its claim finds nothing.
fn claim_all(store: &Store, daemon: &str, daemon_tags: &str) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(offer) = store.claim(daemon, &tags(daemon_tags)).unwrap() {
        got.push(offer.job_id);
    }
    got
}

const JOB_SETS: [&str; 5] = ["", "pool=a", "pool=a,zone=x", "pool=b", "zone=x"];

/// Daemon tags → the job tag sets (indexes into `JOB_SETS`) it takes.
/// Written out, not computed with `tags::matches`, so the index is
/// checked against the rule and not against itself.
const TABLE: [(&str, &[usize]); 6] = [
    ("", &[0]),
    ("pool=a", &[1]),
    ("pool=a,zone=x", &[1, 2, 4]),
    ("pool=a,zone=y", &[1]),
    ("pool=b,zone=x", &[3, 4]),
    ("owner=bob", &[]),
];

#[test]
fn a_claim_finds_exactly_the_jobs_of_the_routing_table() {
    for (daemon_tags, want) in TABLE {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::testdb::open(dir.path()).unwrap();
        let mut by_set: BTreeMap<String, usize> = BTreeMap::new();
        for (i, set) in JOB_SETS.iter().enumerate() {
            for n in 0..2 {
                by_set.insert(enqueue(&store, &format!("t{i}-{n}"), set, "alice"), i);
            }
        }
        let got: Vec<usize> = claim_all(&store, "d", daemon_tags)
            .iter()
            .map(|j| by_set[j])
            .collect();
        let want: Vec<usize> = want.iter().flat_map(|&i| [i, i]).collect();
        let got_sorted: Vec<usize> = {
            let mut g = got.clone();
            g.sort();
            g
        };
        assert_eq!(got_sorted, want, "daemon {daemon_tags:?} took sets {got:?}");
    }
}

#[test]
fn a_claim_takes_people_before_prebuilds_then_the_oldest_across_tag_sets() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::super::testdb::open(dir.path()).unwrap();
    // Enqueued in this order (created_at ties broken by insertion).
    let p1 = enqueue(&store, "p1", "pool=a", "prebuilds");
    let h1 = enqueue(&store, "h1", "pool=a,zone=x", "alice");
    let other = enqueue(&store, "other", "pool=b", "alice");
    let h2 = enqueue(&store, "h2", "pool=a", "bob");
    let p2 = enqueue(&store, "p2", "pool=a,zone=x", "prebuilds");
    let h3 = enqueue(&store, "h3", "", "carol");
    assert_eq!(
        claim_all(&store, "d", "pool=a,zone=x"),
        [h1, h2, p1, p2],
        "people first, oldest first, whatever their tag set"
    );
    assert_eq!(claim_all(&store, "e", "pool=b"), [other]);
    assert_eq!(claim_all(&store, "f", ""), [h3]);
}

/// 50 claimers on two connections to one database (a second writer, as a
/// server database has): every job is offered exactly once, to a daemon
/// allowed to take it, and none that someone could take is left.
#[test]
fn fifty_racing_claimers_take_each_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(super::super::testdb::open(dir.path()).unwrap());
    let b = Arc::new(super::super::testdb::open(dir.path()).unwrap());
    let mut jobs: BTreeMap<String, &str> = BTreeMap::new();
    for n in 0..300 {
        let set = JOB_SETS[n % JOB_SETS.len()];
        jobs.insert(enqueue(&a, &format!("t{n}"), set, "alice"), set);
    }
    let daemon_tags = ["", "pool=a,zone=x", "pool=b,zone=x", "pool=a"];
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let my_tags = daemon_tags[i % daemon_tags.len()];
            std::thread::spawn(move || {
                let got = claim_all(&store, &format!("d{i}"), my_tags);
                (my_tags, got)
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for t in threads {
        let (my_tags, got) = t.join().unwrap();
        for job in got {
            let job_tags = tags(jobs[&job]);
            assert!(
                crate::tags::matches(&tags(my_tags), &job_tags),
                "{job} ({job_tags:?}) went to a daemon tagged {my_tags:?}"
            );
            assert!(seen.insert(job.clone()), "{job} offered twice");
        }
    }
    // Every set but none of the daemons' is taken ("zone=x" alone is
    // taken by the zone=x daemons; all sets are someone's).
    assert_eq!(seen.len(), jobs.len(), "some claimable job was left");
}

/// A database written before the index: its jobs get their tag sets and
/// its blobs their hashes when it is opened, and are claimed as before.
#[test]
fn jobs_and_blobs_from_before_the_index_are_claimed_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (routed, plain) = {
        let store = Store::open(dir.path()).unwrap();
        let routed = enqueue(&store, "routed", "pool=a", "alice");
        (routed, enqueue(&store, "plain", "", "alice"))
    };
    let conn = rusqlite::Connection::open(dir.path().join(super::super::DB_FILE)).unwrap();
    conn.execute_batch(
        "DROP INDEX jobs_claim; DELETE FROM tag_sets;
         UPDATE jobs SET tag_set = NULL;
         UPDATE template_versions SET archive_size = NULL, archive_sha256 = NULL;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    let offer = store.claim("d", &tags("pool=a")).unwrap().unwrap();
    assert_eq!(offer.job_id, routed);
    assert_eq!(offer.archive.size, "routed".len() as u64);
    assert_eq!(offer.archive.sha256, sha256_hex(b"routed"));
    assert_eq!(claim_all(&store, "e", ""), [plain]);
}
