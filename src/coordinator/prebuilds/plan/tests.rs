use std::collections::BTreeMap;

use super::*;
use crate::coordinator::store::{JobRow, WorkspaceRow};

const MIN: Duration = Duration::from_secs(60);

fn slot(desired: u32) -> Slot {
    Slot {
        template: "t".into(),
        version_id: "v2".into(),
        preset: "p".into(),
        desired,
        ttl_seconds: None,
        hard_limit: 0,
    }
}

fn ws(
    name: &str,
    version: &str,
    kind: Transition,
    status: &str,
    created_at: i64,
) -> PrebuildWorkspace {
    PrebuildWorkspace {
        workspace: WorkspaceRow {
            id: format!("{name}-id"),
            name: name.into(),
            owner: "prebuilds".into(),
            template: "t".into(),
            template_version_id: version.into(),
            var_values: BTreeMap::new(),
            state: None,
            created_at,
            parameters: BTreeMap::new(),
            preset: Some("p".into()),
            template_version_name: String::new(),
            active_version_id: None,
            automatic_updates: Default::default(),
        },
        latest: Some(JobRow {
            id: format!("{name}-job"),
            kind: JobKind::WorkspaceBuild(kind),
            status: status.parse().unwrap(),
            initiator: "prebuilds".into(),
            tags: Default::default(),
            template_version_id: version.into(),
            workspace_id: Some(format!("{name}-id")),
            created_at,
            started_at: None,
            finished_at: None,
            error: None,
            daemon_id: None,
            daemon_name: None,
            key_name: None,
            log_count: 0,
            lost: false,
            offered_to: None,
            replacements: Vec::new(),
        }),
        awaiting_late: false,
    }
}

fn creates(a: &Assessment) -> usize {
    a.actions
        .iter()
        .filter(|x| matches!(x, Action::Create { .. }))
        .count()
}

fn destroyed(a: &Assessment) -> Vec<&str> {
    a.actions
        .iter()
        .filter_map(|x| match x {
            Action::Destroy { workspace, .. } => Some(workspace.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn creates_what_is_missing_counting_in_flight_ones_and_replaces_outdated_ones() {
    let have = [
        ws("a", "v2", Transition::Start, "succeeded", 1),
        ws("b", "v2", Transition::Start, "running", 2),
        ws("old", "v1", Transition::Start, "succeeded", 0),
        ws("old-busy", "v1", Transition::Start, "pending", 0),
        ws("parked", "v2", Transition::Stop, "succeeded", 0),
        ws("going", "v2", Transition::Destroy, "running", 0),
    ];
    let a = assess(vec![slot(4)], &have, &[vec![]], 10, MIN);
    assert_eq!(creates(&a), 2, "4 wanted, 1 running, 1 in flight");
    assert_eq!(destroyed(&a), ["old"], "outdated; a busy one is let finish");
    assert_eq!((a.pools[0].running, a.pools[0].in_flight), (1, 1));
}

#[test]
fn a_lost_create_awaiting_its_daemon_is_in_flight_not_destroyed_or_replaced() {
    let mut lost = ws("lost", "v2", Transition::Start, "failed", 1);
    lost.latest.as_mut().unwrap().lost = true;
    lost.awaiting_late = true;
    let mut lost_old = ws("lost-old", "v1", Transition::Start, "failed", 1);
    lost_old.latest.as_mut().unwrap().lost = true;
    lost_old.awaiting_late = true;
    let have = [lost.clone(), lost_old.clone()];
    let history = vec![(JobStatus::Failed, Some(1))];
    let a = assess(
        vec![slot(1)],
        &have,
        std::slice::from_ref(&history),
        10,
        MIN,
    );
    assert!(destroyed(&a).is_empty(), "{:?}", a.actions);
    assert_eq!(creates(&a), 0, "the lost create fills the pool's one slot");
    assert_eq!(a.pools[0].in_flight, 1);
    // Once its daemon reported (or the grace ran out), a failed create
    // is destroyed and replaced as any other.
    lost.awaiting_late = false;
    lost_old.awaiting_late = false;
    let a = assess(vec![slot(1)], &[lost, lost_old], &[history], 10, MIN);
    assert_eq!(destroyed(&a), ["lost", "lost-old"]);
}

#[test]
fn a_canceled_destroy_is_issued_again_a_failed_one_is_left() {
    let have = [
        ws("canceled", "v2", Transition::Destroy, "canceled", 1),
        ws("failed", "v2", Transition::Destroy, "failed", 1),
        ws("going", "v2", Transition::Destroy, "pending", 1),
    ];
    let a = assess(vec![slot(0)], &have, &[vec![]], 10, MIN);
    assert_eq!(destroyed(&a), ["canceled"]);
    assert_eq!(creates(&a), 0);
}

#[test]
fn extras_and_expired_ones_are_destroyed_oldest_extra_first() {
    let have = [
        ws("a", "v2", Transition::Start, "succeeded", 1_000),
        ws("b", "v2", Transition::Start, "succeeded", 2_000),
        ws("c", "v2", Transition::Start, "succeeded", 3_000),
    ];
    let a = assess(vec![slot(1)], &have, &[vec![]], 4_000, MIN);
    assert_eq!(destroyed(&a), ["a", "b"], "the newest one stays");
    assert_eq!(creates(&a), 0);
    // An in-flight create counts toward the pool: one extra, the oldest.
    let mut more = have.to_vec();
    more.push(ws("d", "v2", Transition::Start, "running", 3_500));
    let a = assess(vec![slot(3)], &more, &[vec![]], 4_000, MIN);
    assert_eq!(destroyed(&a), ["a"]);
    let mut s = slot(3);
    s.ttl_seconds = Some(2);
    let a = assess(vec![s], &have, &[vec![]], 4_000, MIN);
    assert_eq!(destroyed(&a), ["a"], "older than 2s");
    assert_eq!(creates(&a), 1, "expired ones are replaced");
    // Until destroyed an expired one is running but not eligible.
    assert_eq!((a.pools[0].running, a.pools[0].eligible), (3, 2));
}

#[test]
fn a_pool_at_its_hard_limit_creates_nothing_but_still_deletes() {
    let failed = |at| (JobStatus::Failed, Some(at));
    let mut s = slot(2);
    s.hard_limit = 3;
    let two = vec![failed(2_000), failed(1_000)];
    let three = vec![failed(3_000), failed(2_000), failed(1_000)];
    // Two failures: backing off, then probing.
    let a = assess(
        vec![s.clone()],
        &[],
        std::slice::from_ref(&two),
        10_000_000,
        MIN,
    );
    assert!(!a.pools[0].hard_limited);
    assert_eq!(creates(&a), 1);
    // Three: stopped, whatever the time, with no backoff shown.
    let outdated = ws("old", "v1", Transition::Start, "succeeded", 1);
    let a = assess(
        vec![s.clone()],
        std::slice::from_ref(&outdated),
        std::slice::from_ref(&three),
        i64::MAX / 2,
        MIN,
    );
    assert!(a.pools[0].hard_limited);
    assert_eq!((a.pools[0].failures, a.pools[0].backoff_until), (3, 0));
    assert_eq!(creates(&a), 0);
    assert_eq!(destroyed(&a), ["old"], "deleting goes on");
    // A canceled create in between neither counts nor breaks the run.
    let mut with_cancel = three.clone();
    with_cancel.insert(1, (JobStatus::Canceled, Some(2_500)));
    let a = assess(vec![s.clone()], &[], &[with_cancel], i64::MAX / 2, MIN);
    assert!(a.pools[0].hard_limited);
    // A success resets the run; 0 turns the limit off.
    let recovered = vec![failed(3_000), (JobStatus::Succeeded, Some(2_500))];
    let a = assess(vec![s.clone()], &[], &[recovered], i64::MAX / 2, MIN);
    assert!(!a.pools[0].hard_limited);
    assert_eq!(creates(&a), 1);
    s.hard_limit = 0;
    let a = assess(vec![s], &[], &[three], i64::MAX / 2, MIN);
    assert!(!a.pools[0].hard_limited);
    assert_eq!(creates(&a), 1);
}

#[test]
fn failing_pools_back_off_doubling_and_probe_one_at_a_time() {
    let failed = |at| (JobStatus::Failed, Some(at));
    let history = vec![
        failed(100_000),
        failed(50_000),
        (JobStatus::Succeeded, Some(1)),
    ];
    // Two failures: wait 2 intervals after the last one.
    let a = assess(
        vec![slot(3)],
        &[],
        std::slice::from_ref(&history),
        100_000 + 119_999,
        MIN,
    );
    assert_eq!(creates(&a), 0);
    assert_eq!(a.pools[0].failures, 2);
    assert_eq!(a.pools[0].backoff_until, 220_000);
    let a = assess(vec![slot(3)], &[], &[history], 220_000, MIN);
    assert_eq!(creates(&a), 1, "one probe, not three");
    // A canceled create (the runbook) is not a failure.
    let canceled = vec![
        (JobStatus::Canceled, Some(5)),
        (JobStatus::Succeeded, Some(1)),
    ];
    let a = assess(vec![slot(2)], &[], &[canceled], 6, MIN);
    assert_eq!((creates(&a), a.pools[0].failures), (2, 0));
    assert_eq!(backoff(MIN, 30), MAX_BACKOFF);
}

#[test]
fn names_are_valid_and_recognisable() {
    let n = workspace_name("cp", "Frankfurt, 4 cores", "a1b2c3");
    assert_eq!(n, "prebuild-cp-frankfurt-4-cores-a1b2c3");
    let long = workspace_name(&"T".repeat(80), &"é!".repeat(40), "zzzzzz");
    assert!(crate::tags::valid_name(&long), "{long}");
}
