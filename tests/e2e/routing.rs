//! Jobs land on the daemons whose key tags allow them, and nowhere else.

use crate::common::{Coord, Daemon, wait_connected};
use crate::{QUICK, template};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_route_by_key_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let general = coord.create_key("general", &[]).await;
    let prebuild = coord
        .create_key("prebuild", &[("is_prebuild", "true")])
        .await;
    let superset = coord
        .create_key("superset", &[("is_prebuild", "true"), ("region", "eu")])
        .await;
    let d_general = Daemon::start(&coord.url, &general, "general-1", &tmp.path().join("c1"));
    let d_pre = Daemon::start(&coord.url, &prebuild, "prebuild-1", &tmp.path().join("c2"));
    let d_super = Daemon::start(&coord.url, &superset, "superset-1", &tmp.path().join("c3"));
    wait_connected(&coord, 3).await;

    let dir = template(tmp.path(), "t", QUICK);
    // (job tags, daemons allowed to take it)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[], &["general-1"]),
        (&[("is_prebuild", "true")], &["prebuild-1", "superset-1"]),
        (&[("region", "eu")], &["superset-1"]),
        (
            &[("is_prebuild", "true"), ("region", "eu")],
            &["superset-1"],
        ),
    ];
    let mut jobs = Vec::new();
    for (i, (tags, allowed)) in cases.iter().enumerate() {
        for n in 0..2 {
            let job = coord.push(&format!("t{i}-{n}"), &dir, tags).await;
            jobs.push((job, *allowed));
        }
    }
    // Nobody may take this one: no key has region=us.
    let orphan = coord.push("orphan", &dir, &[("region", "us")]).await;
    for (job, allowed) in &jobs {
        let j = coord.wait_succeeded(job).await;
        assert!(
            allowed.contains(&j.daemon.as_str()),
            "job tags {:?} ran on {}",
            j.tags,
            j.daemon
        );
    }
    let o = coord.job(&orphan).await;
    assert_eq!(o.status, "pending", "a job no daemon matches stays pending");
    assert_eq!(o.daemon, "");

    for d in [d_general, d_pre, d_super] {
        d.stop().await.unwrap();
    }
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prebuild_pool_takes_only_prebuild_jobs() {
    // The seed scenario: a dedicated pool whose key says is_prebuild=true
    // never takes general work, and the general daemon never takes
    // prebuild work.
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let pool = coord
        .create_key("prebuild-pool", &[("is_prebuild", "true")])
        .await;
    let general = coord.create_key("general", &[]).await;
    let dir = template(tmp.path(), "t", QUICK);
    let pre_import = coord.push("pre", &dir, &[("is_prebuild", "true")]).await;
    let gen_import = coord.push("gen", &dir, &[]).await;
    // Only the pool is up: the general job must wait for its daemon.
    let d_pool = Daemon::start(&coord.url, &pool, "pool-1", &tmp.path().join("c1"));
    assert_eq!(coord.wait_succeeded(&pre_import).await.daemon, "pool-1");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(coord.job(&gen_import).await.status, "pending");
    let d_gen = Daemon::start(&coord.url, &general, "general-1", &tmp.path().join("c2"));
    assert_eq!(coord.wait_succeeded(&gen_import).await.daemon, "general-1");

    let pre_ws = coord
        .create_workspace("pre-ws", "pre", "prebuilds", &[])
        .await;
    let gen_ws = coord.create_workspace("gen-ws", "gen", "alice", &[]).await;
    let pre = coord.wait_succeeded(&pre_ws).await;
    assert_eq!(
        (pre.daemon.as_str(), pre.initiator.as_str()),
        ("pool-1", "prebuilds")
    );
    assert_eq!(coord.wait_succeeded(&gen_ws).await.daemon, "general-1");
    d_pool.stop().await.unwrap();
    d_gen.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test]
async fn a_pending_job_says_which_tag_keeps_each_daemon_out() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("pool", &[("is_prebuild", "true")]).await;
    let d = Daemon::start(&coord.url, &key, "pool-1", &tmp.path().join("c1"));
    wait_connected(&coord, 1).await;
    let dir = template(tmp.path(), "t", QUICK);
    let import = coord.push("t", &dir, &[]).await;

    let job = coord.job(&import).await;
    assert_eq!(job.status, "pending");
    assert_eq!(
        job.routing,
        vec![
            "no connected daemon can take it; it needs a key with no tags (an untagged job goes only to untagged daemons)",
            "daemon pool-1 is tagged is_prebuild=true; an untagged job goes only to untagged daemons",
        ]
    );
    // Once a matching daemon is there, the job runs and the note is gone.
    let general = coord.create_key("general", &[]).await;
    let g = Daemon::start(&coord.url, &general, "general-1", &tmp.path().join("c2"));
    let done = coord.wait_succeeded(&import).await;
    assert!(done.routing.is_empty());
    d.stop().await.unwrap();
    g.stop().await.unwrap();
    coord.stop().await;
}
