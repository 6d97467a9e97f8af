//! Claims against the reconciler and each other, on a real SQLite file
//! from many threads: each prebuild goes to exactly one creator, and the
//! reconciler's destroy never takes one that was claimed.

use std::sync::{Arc, Barrier};

use super::*;
use crate::coordinator::store::{ClaimWanted, Claimed, PREBUILDS_OWNER, VersionRow};

struct Pool {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    version: VersionRow,
}

/// A template with `n` succeeded prebuilds of preset `p`, plus ones that
/// are not eligible: another preset, one still building, one expired.
fn pool(n: usize) -> (Pool, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(super::super::testdb::open(dir.path()).unwrap());
    let (version_id, import) = store
        .push_template(
            "t",
            b"archive",
            &Tags::new(),
            &BTreeMap::new(),
            "alice",
            &NewImport::default(),
        )
        .unwrap();
    succeed(&store, &import);
    // Only the active version's prebuilds are claimed.
    store
        .conn()
        .unwrap()
        .execute(
            "UPDATE templates SET active_version_id = ?1 WHERE name = 't'",
            [&version_id],
        )
        .unwrap();
    let version = store.version(&version_id).unwrap();
    let prebuild = |name: &str, preset: &str, done: bool| {
        let (id, job) = store
            .create_workspace(
                &format!("{name}-id"),
                name,
                PREBUILDS_OWNER,
                &version,
                &BTreeMap::new(),
                &NewBuild {
                    preset: Some(preset.into()),
                    ..Default::default()
                },
                true,
                Default::default(),
            )
            .unwrap();
        if done {
            succeed(&store, &job);
        }
        id
    };
    let ids = (0..n)
        .map(|i| prebuild(&format!("prebuild-{i}"), "p", true))
        .collect();
    prebuild("other-preset", "q", true);
    prebuild("still-building", "p", false);
    prebuild("expired", "p", true);
    store
        .conn()
        .unwrap()
        .execute(
            "UPDATE workspaces SET created_at = 1 WHERE name = 'expired'",
            [],
        )
        .unwrap();
    (
        Pool {
            _dir: dir,
            store,
            version,
        },
        ids,
    )
}

fn succeed(store: &Store, job: &str) {
    store
        .conn()
        .unwrap()
        .execute(
            "UPDATE jobs SET status = 'succeeded', finished_at = 1 WHERE id = ?1",
            [job],
        )
        .unwrap();
}

fn claim(store: &Store, version: &VersionRow, name: &str, owner: &str) -> Option<Claimed> {
    store
        .claim_prebuild(
            &ClaimWanted {
                template: "t",
                version,
                preset: "p",
                ttl_seconds: 3600,
                name,
                owner,
                automatic_updates: Default::default(),
            },
            &|_| Ok(NewBuild::default()),
        )
        .unwrap()
}

/// (name, owner, reconciled, claimed_from) of every live workspace.
fn live(store: &Store) -> Vec<(String, String, bool, Option<String>)> {
    let conn = store.conn().unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT name, owner, reconciled, claimed_from FROM workspaces
             WHERE deleted = 0 ORDER BY name",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn twenty_concurrent_creates_claim_exactly_the_five_eligible() {
    let (pool, ids) = pool(5);
    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (store, version, barrier) =
                (pool.store.clone(), pool.version.clone(), barrier.clone());
            std::thread::spawn(move || {
                let (name, owner) = (format!("ws-{i:02}"), format!("user{i}"));
                barrier.wait();
                match claim(&store, &version, &name, &owner) {
                    Some(c) => Some(c),
                    None => {
                        // What a create does when nothing is eligible.
                        store
                            .create_workspace(
                                &format!("{name}-id"),
                                &name,
                                &owner,
                                &version,
                                &BTreeMap::new(),
                                &NewBuild::default(),
                                false,
                                Default::default(),
                            )
                            .unwrap();
                        None
                    }
                }
            })
        })
        .collect();
    let results: Vec<Option<Claimed>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let claimed: Vec<&Claimed> = results.iter().flatten().collect();
    assert_eq!(claimed.len(), 5, "claims: {claimed:?}");
    let mut taken: Vec<&str> = claimed.iter().map(|c| c.workspace_id.as_str()).collect();
    taken.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(taken, want, "each eligible prebuild claimed once");
    let rows = live(&pool.store);
    // 20 people's workspaces, each with its one owner, and the three
    // ineligible prebuilds still the reconciler's.
    let people: Vec<_> = rows.iter().filter(|r| r.0.starts_with("ws-")).collect();
    assert_eq!(people.len(), 20, "{rows:?}");
    for (name, owner, reconciled, _) in &people {
        assert_eq!(owner, &format!("user{}", name[3..].parse::<u32>().unwrap()));
        assert!(!reconciled, "{name} is no longer the reconciler's");
    }
    assert_eq!(
        people.iter().filter(|r| r.3.is_some()).count(),
        5,
        "{rows:?}"
    );
    let left: Vec<&str> = rows.iter().filter(|r| r.2).map(|r| r.0.as_str()).collect();
    assert_eq!(left, ["expired", "other-preset", "still-building"]);
    // Every claim enqueued its claim build, flagged as one.
    let n: i64 = pool
        .store
        .conn()
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM jobs WHERE prebuild_claim = 1 AND status = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 5);
}

#[test]
fn reconciler_destroy_and_claim_each_win_a_prebuild_never_both() {
    let (pool, ids) = pool(8);
    let barrier = Arc::new(Barrier::new(16));
    let mut threads = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (store, b) = (pool.store.clone(), barrier.clone());
        let ws = pool.store.workspace_by_id(id).unwrap();
        threads.push(std::thread::spawn(move || {
            b.wait();
            // The reconciler read the row before the claim: a stale row.
            store.destroy_prebuild(&ws, &NewBuild::default()).is_ok()
        }));
        let (store, version, b) = (pool.store.clone(), pool.version.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            b.wait();
            claim(&store, &version, &format!("ws-{i}"), "bob").is_some()
        }));
    }
    let wins = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|w| *w)
        .count();
    // Each of the 8 prebuilds went to exactly one side: a claim that lost
    // its first choice takes another, so count per workspace.
    assert!(wins <= 16);
    let conn = pool.store.conn().unwrap();
    for id in &ids {
        let (owner, destroys, claims): (String, i64, i64) = conn
            .query_row(
                "SELECT w.owner,
                   (SELECT COUNT(*) FROM jobs j WHERE j.workspace_id = w.id AND j.transition = 'destroy'),
                   (SELECT COUNT(*) FROM jobs j WHERE j.workspace_id = w.id AND j.prebuild_claim = 1)
                 FROM workspaces w WHERE w.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            destroys + claims,
            1,
            "{id}: destroys {destroys}, claims {claims}"
        );
        assert_eq!(owner == "bob", claims == 1, "{id} owned by {owner}");
    }
}

#[test]
fn a_claimed_prebuild_refuses_the_reconcilers_stale_destroy() {
    let (pool, ids) = pool(1);
    let stale = pool.store.workspace_by_id(&ids[0]).unwrap();
    let c = claim(&pool.store, &pool.version, "mine", "carol").unwrap();
    assert_eq!(c.from, "prebuild-0");
    // Even once the claim build finished, the prebuild is carol's.
    succeed(&pool.store, &c.job_id);
    let e = pool
        .store
        .destroy_prebuild(&stale, &NewBuild::default())
        .unwrap_err();
    assert!(
        matches!(&e, CoordError::FailedPrecondition(m) if m.contains("claimed")),
        "{e:?}"
    );
    assert_eq!(pool.store.workspace("mine").unwrap().owner, "carol");
    assert_eq!(
        pool.store.claim_of(&c.workspace_id).unwrap().map(|c| c.0),
        Some("prebuild-0".to_string())
    );
    // Nothing left to claim: the expired, building and other-preset ones
    // are not eligible.
    assert!(claim(&pool.store, &pool.version, "next", "dave").is_none());
}

#[test]
fn a_failed_claim_build_keeps_the_new_owner_and_never_returns_to_the_pool() {
    let (pool, _) = pool(1);
    let c = claim(&pool.store, &pool.version, "mine", "erin").unwrap();
    pool.store
        .conn()
        .unwrap()
        .execute(
            "UPDATE jobs SET status = 'failed', finished_at = 2, error = 'apply failed'
             WHERE id = ?1",
            [&c.job_id],
        )
        .unwrap();
    let ws = pool.store.workspace("mine").unwrap();
    assert_eq!(ws.owner, "erin");
    let latest = pool.store.latest_build(&ws.id).unwrap().unwrap();
    assert_eq!(
        (latest.id.as_str(), latest.status),
        (c.job_id.as_str(), JobStatus::Failed)
    );
    // Not the reconciler's: it neither counts toward the pool nor gets
    // destroyed by it, and no one else can claim it.
    let pools = pool.store.prebuild_workspaces().unwrap();
    assert!(pools.iter().all(|p| p.workspace.id != ws.id));
    assert!(claim(&pool.store, &pool.version, "again", "frank").is_none());
    assert_eq!(
        pool.store.claim_counts().unwrap(),
        [("t".to_string(), "p".to_string(), 1)]
    );
}

#[test]
fn claims_are_still_counted_after_the_store_is_reopened() {
    let (pool, _) = pool(2);
    let created = |store: &Store| -> Vec<(String, u64)> {
        let counts = store.prebuild_counts().unwrap().into_iter();
        counts
            .filter(|c| c.preset == "p")
            .map(|c| (c.template, c.created))
            .collect()
    };
    let created_before = created(&pool.store);
    claim(&pool.store, &pool.version, "a", "u1").unwrap();
    claim(&pool.store, &pool.version, "b", "u2").unwrap();
    let reopened = super::super::testdb::open(pool._dir.path()).unwrap();
    assert_eq!(
        reopened.claim_counts().unwrap(),
        [("t".to_string(), "p".to_string(), 2)]
    );
    assert_eq!(
        reopened
            .claim_of(&reopened.workspace("b").unwrap().id)
            .unwrap()
            .map(|c| c.0),
        Some("prebuild-1".to_string())
    );
    // A claimed prebuild was still created by the pool: the counter that
    // `coderd_prebuilt_workspaces_created_total` shows must not drop.
    assert_eq!(created(&reopened), created_before);
    assert!(!created_before.is_empty());
}

#[test]
fn a_claimed_prebuilds_create_still_counts_as_the_pools_last_success() {
    let (pool, _) = pool(1);
    let creates = |store: &Store| -> Vec<JobStatus> {
        store
            .prebuild_creates(&pool.version.id, "p", 10, 0)
            .unwrap()
            .into_iter()
            .map(|(status, _)| status)
            .collect()
    };
    // An older failed create, then the succeeded one (prebuild-0) newest.
    pool.store
        .conn()
        .unwrap()
        .execute(
            "UPDATE jobs SET created_at = 0 WHERE workspace_id = 'still-building-id'",
            [],
        )
        .unwrap();
    pool.store
        .conn()
        .unwrap()
        .execute(
            "UPDATE jobs SET status = 'failed' WHERE workspace_id IN ('still-building-id')",
            [],
        )
        .unwrap();
    let before = creates(&pool.store);
    claim(&pool.store, &pool.version, "mine", "gina").unwrap();
    assert_eq!(
        creates(&pool.store),
        before,
        "the claim changed the history"
    );
    assert_eq!(before.first(), Some(&JobStatus::Succeeded));
}

#[test]
fn replacing_claims_are_counted_from_the_stored_reports_after_reopening() {
    let (pool, _) = pool(2);
    let a = claim(&pool.store, &pool.version, "a", "u1").unwrap();
    let b = claim(&pool.store, &pool.version, "b", "u2").unwrap();
    let key = pool.store.create_key("k", "hash-k", &Tags::new()).unwrap();
    let d = pool
        .store
        .connect_daemon("d1", &key, "0", &Report::default())
        .unwrap()
        .id;
    let replaced = vec!["terraform_data.home (forced by triggers_replace)".to_string()];
    let mut ours = vec![a.job_id.clone(), b.job_id.clone()];
    while !ours.is_empty() {
        let offer = pool.store.claim(&d, &Tags::new()).unwrap().unwrap();
        let secret = offer.secret.expose();
        pool.store
            .ack(&offer.job_id, &d, "d1", "k", secret)
            .unwrap();
        ours.retain(|j| *j != offer.job_id);
        let req = proto::FinishJobRequest {
            job_id: offer.job_id.clone(),
            outcome: JobOutcome::Succeeded as i32,
            // Only `a`'s claim replaced; the other builds report nothing.
            replacements: if offer.job_id == a.job_id {
                replaced.clone()
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        pool.store
            .finish("d1", "k", secret, &took(&req), &[])
            .unwrap();
    }
    let reopened = super::super::testdb::open(pool._dir.path()).unwrap();
    assert_eq!(
        reopened.replacement_counts().unwrap(),
        [("t".to_string(), "p".to_string(), 1)]
    );
    assert_eq!(reopened.job(&a.job_id).unwrap().replacements, replaced);
    assert!(reopened.job(&b.job_id).unwrap().replacements.is_empty());
}
