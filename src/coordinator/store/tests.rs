//! Store transitions on a real SQLite file: operator cancels and the
//! daemon states daemons report.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::cancel::CANCELED_BY_OPERATOR;
use super::{DaemonRow, JobStatus, KeyRow, NewBuild, NewImport, Report, Store};
use crate::coordinator::error::CoordError;
use crate::proto::{self, DaemonState, JobOutcome};
use crate::tags::Tags;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    key: KeyRow,
    /// The job secret of each job's latest offer made through [`Fixture::claim`].
    secrets: std::cell::RefCell<BTreeMap<String, String>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = super::testdb::open(dir.path()).unwrap();
    let key = store.create_key("k", "hash-k", &Tags::new()).unwrap();
    Fixture {
        _dir: dir,
        store,
        key,
        secrets: Default::default(),
    }
}

impl Fixture {
    /// A pending, untagged template import job.
    fn job(&self) -> String {
        self.push("t").1
    }

    /// Pushes template `name`: (version id, import job id).
    fn push(&self, name: &str) -> (String, String) {
        self.store
            .push_template(
                name,
                b"archive",
                &Tags::new(),
                &BTreeMap::new(),
                "alice",
                &NewImport::default(),
            )
            .unwrap()
    }

    fn daemon(&self, name: &str) -> String {
        self.store
            .connect_daemon(name, &self.key, "0", &Report::default())
            .unwrap()
            .id
    }

    /// The best job for daemon `d` (id), offered to it; its secret is kept.
    fn claim(&self, d: &str) -> Option<super::Offer> {
        let offer = self.store.claim(d, &Tags::new()).unwrap()?;
        self.secrets
            .borrow_mut()
            .insert(offer.job_id.clone(), offer.secret.expose().to_string());
        Some(offer)
    }

    /// Daemon `d1` (key `k`) reports `req` with the secret of its job's
    /// offer, as the service hands the store a FinishJob.
    fn report(&self, req: &proto::FinishJobRequest, state: &[u8]) -> Result<(), CoordError> {
        self.store
            .finish("d1", "k", &self.secret(&req.job_id), &took(req), state)
    }

    /// The secret of `job`'s latest offer.
    fn secret(&self, job: &str) -> String {
        self.secrets
            .borrow()
            .get(job)
            .cloned()
            .expect("job offered")
    }

    fn daemon_row(&self, name: &str) -> DaemonRow {
        let all = self.store.list_daemons().unwrap();
        all.into_iter().find(|d| d.name == name).unwrap()
    }

    /// A workspace's first build, queued behind its template's import:
    /// (its version, workspace id, job id).
    fn pending_build(&self) -> (super::VersionRow, String, String) {
        let version = self.store.version(&self.push("w").0).unwrap();
        let (ws, job) = self
            .store
            .create_workspace(
                "ws-id",
                "ws",
                "alice",
                &version,
                &BTreeMap::new(),
                &NewBuild::default(),
                false,
                Default::default(),
            )
            .unwrap();
        (version, ws, job)
    }

    /// A workspace's first build, running on daemon `d1`: (its version,
    /// workspace id, job id).
    fn running_build(&self) -> (super::VersionRow, String, String) {
        let (version, ws, job) = self.pending_build();
        let d = self.daemon("d1");
        // The import is older: claim until the build is ours.
        while self.claim(&d).unwrap().job_id != job {}
        self.store
            .ack(&job, &d, "d1", "k", &self.secret(&job))
            .unwrap();
        (version, ws, job)
    }

    /// A job acknowledged by daemon `d1` (running).
    fn running_job(&self) -> (String, String) {
        let job = self.job();
        let d = self.daemon("d1");
        let offer = self.claim(&d).unwrap();
        assert_eq!(offer.job_id, job);
        self.store
            .ack(&job, &d, "d1", "k", &self.secret(&job))
            .unwrap();
        (job, d)
    }
}

/// A FinishJob header as the store takes it (converted as the service
/// does).
fn took(req: &proto::FinishJobRequest) -> super::JobReport {
    crate::coordinator::transfer::job_report(req).unwrap()
}

fn finish(job: &str, outcome: JobOutcome) -> proto::FinishJobRequest {
    proto::FinishJobRequest {
        job_id: job.to_string(),
        outcome: outcome as i32,
        ..Default::default()
    }
}

#[test]
fn pending_job_is_canceled_at_once_and_never_claimed() {
    let f = fixture();
    let job = f.job();
    let c = f.store.cancel_job(&job).unwrap();
    assert_eq!(c.job.status, JobStatus::Canceled);
    assert_eq!(c.job.error.as_deref(), Some(CANCELED_BY_OPERATOR));
    assert!(c.job.finished_at.is_some());
    assert_eq!(c.notify_daemon, None, "nobody runs it");
    let d = f.daemon("d1");
    assert!(f.store.claim(&d, &Tags::new()).unwrap().is_none());
}

#[test]
fn offered_job_canceled_refuses_the_ack_and_the_ownership_confirm() {
    let f = fixture();
    let job = f.job();
    let d = f.daemon("d1");
    f.claim(&d).unwrap();
    let c = f.store.cancel_job(&job).unwrap();
    assert_eq!(c.job.status, JobStatus::Canceled);
    assert_eq!(c.notify_daemon, None);
    let ack = f
        .store
        .ack(&job, &d, "d1", "k", &f.secret(&job))
        .unwrap_err();
    assert!(matches!(ack, CoordError::FailedPrecondition(_)), "{ack}");
    let confirm = f
        .store
        .append_logs(&job, "d1", "k", &f.secret(&job), &[])
        .unwrap_err();
    assert!(
        matches!(&confirm, CoordError::FailedPrecondition(m)
            if m == &format!("update job {job}: it was canceled before it started")),
        "{confirm}"
    );
    // The offer is gone, so its daemon ending its session changes nothing.
    f.store.disconnect_daemon(&d).unwrap();
    assert_eq!(f.store.job(&job).unwrap().status, JobStatus::Canceled);
}

#[test]
fn running_job_goes_canceling_then_ends_as_the_daemon_reports() {
    let f = fixture();
    let (job, d) = f.running_job();
    let c = f.store.cancel_job(&job).unwrap();
    assert_eq!(c.job.status, JobStatus::Canceling);
    assert_eq!(c.notify_daemon.as_deref(), Some(d.as_str()));
    assert_eq!(f.store.canceling_jobs(&d).unwrap(), vec![job.clone()]);

    // Again: accepted, nothing changes, the daemon is named again.
    let again = f.store.cancel_job(&job).unwrap();
    assert_eq!(again.job.status, JobStatus::Canceling);
    assert_eq!(again.job.finished_at, None);
    assert_eq!(again.notify_daemon.as_deref(), Some(d.as_str()));

    // The heartbeat answer says canceled (the fallback to the push), and a
    // late AckJob on the stream is still the daemon's own job.
    let (_, canceled) = f
        .store
        .append_logs(&job, "d1", "k", &f.secret(&job), &[])
        .unwrap();
    assert!(canceled);
    f.store.ack(&job, &d, "d1", "k", &f.secret(&job)).unwrap();

    // Terraform finished before the interrupt: that outcome stands.
    f.report(&finish(&job, JobOutcome::Succeeded), &[]).unwrap();
    assert_eq!(f.store.job(&job).unwrap().status, JobStatus::Succeeded);
    let late = f.store.cancel_job(&job).unwrap_err();
    assert!(
        matches!(&late, CoordError::FailedPrecondition(m)
            if m == &format!("cancel job {job}: it has already ended (succeeded)")),
        "{late}"
    );
}

#[test]
fn canceling_job_reported_canceled_ends_canceled() {
    let f = fixture();
    let (job, d) = f.running_job();
    f.store.cancel_job(&job).unwrap();
    let mut req = finish(&job, JobOutcome::Canceled);
    req.error = "canceled: terraform interrupted".into();
    f.report(&req, &[]).unwrap();
    let j = f.store.job(&job).unwrap();
    assert_eq!(j.status, JobStatus::Canceled);
    assert_eq!(j.error.as_deref(), Some("canceled: terraform interrupted"));
    assert!(f.store.canceling_jobs(&d).unwrap().is_empty());
    let err = f.store.cancel_job(&job).unwrap_err();
    assert!(
        err.to_string().contains("it has already ended (canceled)"),
        "{err}"
    );
}

#[test]
fn unknown_job_is_not_found() {
    let f = fixture();
    let err = f.store.cancel_job("nope").unwrap_err();
    assert!(
        matches!(&err, CoordError::NotFound(m) if m == "cancel job nope: no such job"),
        "{err}"
    );
}

#[test]
fn reported_state_decides_the_status_until_the_daemon_is_offline() {
    let f = fixture();
    let (job, d) = f.running_job();
    // Unreported: derived from the jobs it runs.
    let row = f.daemon_row("d1");
    assert_eq!(
        (row.status(), row.current_job()),
        ("busy", Some(job.as_str()))
    );

    let draining = Report::new(DaemonState::Draining as i32, &job);
    assert!(!draining.takes_jobs());
    f.store.report_daemon_state(&d, &draining).unwrap();
    let row = f.daemon_row("d1");
    assert_eq!(row.report, draining);
    assert_eq!(
        (row.status(), row.current_job()),
        ("draining", Some(job.as_str()))
    );

    f.store
        .report_daemon_state(&d, &Report::new(DaemonState::Idle as i32, ""))
        .unwrap();
    let row = f.daemon_row("d1");
    assert_eq!((row.status(), row.current_job()), ("idle", None));

    // Offline: the report is stale; the job it still holds shows.
    f.store.disconnect_daemon(&d).unwrap();
    let row = f.daemon_row("d1");
    assert_eq!(
        (row.status(), row.current_job()),
        ("offline", Some(job.as_str()))
    );

    // A reconnect's Hello replaces the report; UNSPECIFIED falls back.
    let hello = Report::new(DaemonState::Canceling as i32, &job);
    f.store.connect_daemon("d1", &f.key, "0", &hello).unwrap();
    assert_eq!(f.daemon_row("d1").status(), "canceling");
    f.store.disconnect_daemon(&d).unwrap();
    let unspecified = Report::new(DaemonState::Unspecified as i32, "");
    assert_eq!(unspecified, Report::default());
    assert!(unspecified.takes_jobs());
    f.store
        .connect_daemon("d1", &f.key, "0", &unspecified)
        .unwrap();
    assert_eq!(f.daemon_row("d1").status(), "busy");
    // A state newer than this version is treated as unreported.
    assert_eq!(Report::new(99, "").state, None);
}

#[test]
fn database_from_before_daemon_states_gains_the_columns() {
    // SQLite's own upgrade path (PostgreSQL's schema is versioned).
    let dir = tempfile::tempdir().unwrap();
    {
        // The daemons table as the previous version created it, with a row.
        let conn = Connection::open(dir.path().join("provisionerd.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE daemons (
               id           TEXT PRIMARY KEY,
               name         TEXT NOT NULL UNIQUE,
               key_name     TEXT NOT NULL,
               tags         TEXT NOT NULL,
               version      TEXT NOT NULL,
               connected    INTEGER NOT NULL,
               last_seen_at INTEGER NOT NULL
             );
             INSERT INTO daemons VALUES ('id-1', 'old', 'k', '{}', '0.0.9', 1, 5);",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    store.reset_on_start().unwrap();
    let rows = store.list_daemons().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].report, Report::default());
    assert_eq!(rows[0].status(), "offline");
    let key = store.create_key("k", "h", &Tags::new()).unwrap();
    let busy = Report::new(DaemonState::Busy as i32, "j1");
    let row = store.connect_daemon("old", &key, "0.1.0", &busy).unwrap();
    assert_eq!(row.id, "id-1", "the old row is reused");
    let rows = store.list_daemons().unwrap();
    assert_eq!(
        (rows[0].status(), rows[0].current_job()),
        ("busy", Some("j1"))
    );
    drop(store);
    // Opening again finds the columns present and adds nothing.
    Store::open(dir.path()).unwrap();
}

#[test]
fn a_reaped_job_still_takes_its_daemons_logs_and_state_but_stays_failed() {
    let f = fixture();
    let (_, ws, job) = f.running_build();

    let reaped = f.store.fail_lost_jobs(super::now_ms() + 1).unwrap();
    assert!(reaped.contains(&job));
    let lost = f.store.job(&job).unwrap();
    assert_eq!((lost.status, lost.lost), (JobStatus::Failed, true));

    // The daemon comes back: its lines are stored, and it is told to stop.
    let line = proto::LogLine {
        seq: 1,
        output: "late line".into(),
        ..Default::default()
    };
    assert_eq!(
        f.store
            .append_logs(&job, "d1", "k", &f.secret(&job), &[line])
            .unwrap(),
        (1, true)
    );
    let mut late = finish(&job, JobOutcome::Canceled);
    late.error = "canceled: terraform interrupted".into();
    late.has_state = true;
    late.log_count = 1;
    let state = b"{\"version\":4}";
    f.report(&late, state).unwrap();
    f.report(&late, state).unwrap();

    let done = f.store.job(&job).unwrap();
    assert_eq!(done.status, JobStatus::Failed, "a reaped job stays failed");
    assert_eq!(
        done.error.as_deref(),
        Some(
            "daemon \"d1\" lost: no update within the job lease; the daemon reported \
             later: canceled (canceled: terraform interrupted)"
        )
    );
    let stored = f.store.workspace_by_id(&ws).unwrap().state;
    assert_eq!(stored.as_deref(), Some(&b"{\"version\":4}"[..]));
    // Someone else's job it is not.
    let other = f
        .store
        .finish("d2", "k", &f.secret(&job), &took(&late), state)
        .unwrap_err();
    assert!(matches!(other, CoordError::PermissionDenied(_)), "{other}");
}

#[test]
fn a_late_state_never_overwrites_a_newer_builds() {
    let f = fixture();
    let (version, ws, job) = f.running_build();
    f.store.fail_lost_jobs(super::now_ms() + 1).unwrap();
    // Someone builds again after the failure.
    let row = f.store.workspace_by_id(&ws).unwrap();
    f.store
        .enqueue_build(
            &row,
            &version,
            proto::Transition::Stop,
            "alice",
            &NewBuild::default(),
        )
        .unwrap();

    let mut late = finish(&job, JobOutcome::Succeeded);
    late.has_state = true;
    f.report(&late, b"{\"serial\":1}").unwrap();
    assert_eq!(f.store.workspace_by_id(&ws).unwrap().state, None);
    let error = f.store.job(&job).unwrap().error.unwrap();
    assert!(
        error.ends_with("the daemon reported later: succeeded; its state was kept on the job, not applied: a later build exists"),
        "{error}"
    );
}

#[test]
fn the_prebuild_pause_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::testdb::open(dir.path()).unwrap();
    assert!(!store.prebuilds_paused().unwrap());
    store.set_prebuilds_paused(true).unwrap();
    drop(store);
    let store = super::testdb::open(dir.path()).unwrap();
    assert!(store.prebuilds_paused().unwrap());
    store.set_prebuilds_paused(false).unwrap();
    assert!(!store.prebuilds_paused().unwrap());
}

mod claims;
mod queue;
mod reports;
mod secrets;
mod versions;

#[test]
fn a_cancel_only_while_pending_leaves_a_running_job_alone() {
    let f = fixture();
    let (running, d) = f.running_job();
    let err = f.store.cancel_job_if(&running, true).unwrap_err();
    assert!(
        matches!(&err, CoordError::FailedPrecondition(m) if m.contains("it is running")),
        "{err}"
    );
    assert_eq!(f.store.job(&running).unwrap().status, JobStatus::Running);
    assert!(f.store.canceling_jobs(&d).unwrap().is_empty());

    let pending = f.job();
    let c = f.store.cancel_job_if(&pending, true).unwrap();
    assert_eq!(c.job.status, JobStatus::Canceled);
    assert_eq!(c.notify_daemon, None);
}

#[test]
fn jobs_list_by_several_states_pages_through_them() {
    let f = fixture();
    let (running, _) = f.running_job();
    let canceled = f.job();
    f.store.cancel_job(&canceled).unwrap();
    let pending = f.job();
    let page = |after: Option<String>| {
        let filter = super::JobFilter {
            statuses: vec![JobStatus::Pending, JobStatus::Running],
            limit: 1,
            after,
            ..Default::default()
        };
        let ids: Vec<String> = f
            .store
            .list_jobs(&filter)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        ids
    };
    // Newest first; the canceled job between them is skipped, not counted.
    let first = page(None);
    assert_eq!(first, [pending.as_str()]);
    let second = page(Some(pending));
    assert_eq!(second, [running.as_str()]);
    assert!(page(Some(running)).is_empty());
}
