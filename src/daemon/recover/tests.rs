use super::collect::{BACKUP_FILE, STATE_FILE};
use super::*;
use crate::daemon::record::JobRecord;
use std::path::PathBuf;

fn record(id: &str, kind: &str) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        job_secret: crate::grpc::Secret::new("pdj_s"),
        kind: kind.into(),
        started_at_ms: 1,
        work_dir: PathBuf::new(),
        finished: None,
    }
}

#[test]
fn only_a_builds_valid_json_state_is_collected_and_stray_spools_go() {
    let tmp = tempfile::tempdir().unwrap();
    let records = Records::new(tmp.path().join("records"));
    std::fs::create_dir_all(tmp.path().join("records")).unwrap();
    let jobs = tmp.path().join("jobs");
    let spools = tmp.path().join("spool");
    for (id, kind, state) in [
        ("good", "workspace_build", Some("{\"version\": 4}")),
        ("torn", "workspace_build", Some("{\"version\": 4, \"res")),
        ("none", "workspace_build", None),
        ("import", "template_import", Some("{}")),
    ] {
        records.write(&record(id, kind)).unwrap();
        std::fs::create_dir_all(jobs.join(id)).unwrap();
        if let Some(s) = state {
            std::fs::write(jobs.join(id).join(STATE_FILE), s).unwrap();
        }
    }
    // A result that was not reported kept its state beside the record.
    records.write(&record("kept", "workspace_build")).unwrap();
    records.save_state("kept", b"{\"serial\": 2}").unwrap();
    std::fs::create_dir_all(&spools).unwrap();
    for id in ["good", "settled"] {
        std::fs::write(spool::path(&spools, id), "").unwrap();
    }
    // A replacement a kill interrupted.
    std::fs::write(spools.join(".good.log.tmp"), "").unwrap();

    let mut got: Vec<(String, Option<Vec<u8>>)> = collect(&records, &jobs, &spools)
        .unwrap()
        .into_iter()
        .map(|u| (u.record.job_id, u.state))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("good".to_string(), Some(b"{\"version\": 4}".to_vec())),
            ("import".to_string(), None),
            ("kept".to_string(), Some(b"{\"serial\": 2}".to_vec())),
            ("none".to_string(), None),
            ("torn".to_string(), None),
        ]
    );
    assert!(spool::path(&spools, "good").exists());
    assert!(!spool::path(&spools, "settled").exists());
    assert!(!spools.join(".good.log.tmp").exists());
}

#[test]
fn a_collected_state_outlives_the_work_root_and_a_torn_one_falls_back_to_its_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let records = Records::new(tmp.path().join("records"));
    std::fs::create_dir_all(tmp.path().join("records")).unwrap();
    let jobs = tmp.path().join("jobs");
    let spools = tmp.path().join("spool");
    for (id, state, backup) in [
        ("whole", "{\"serial\": 5}", None),
        ("torn", "{\"serial\": 5, \"reso", Some("{\"serial\": 4}")),
    ] {
        records.write(&record(id, "workspace_build")).unwrap();
        let dir = jobs.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(STATE_FILE), state).unwrap();
        if let Some(b) = backup {
            std::fs::write(dir.join(BACKUP_FILE), b).unwrap();
        }
    }
    let states = |got: Vec<Unfinished>| -> Vec<(String, Option<Vec<u8>>)> {
        let mut v: Vec<_> = got
            .into_iter()
            .map(|u| (u.record.job_id, u.state))
            .collect();
        v.sort();
        v
    };
    let want = vec![
        ("torn".to_string(), Some(b"{\"serial\": 4}".to_vec())),
        ("whole".to_string(), Some(b"{\"serial\": 5}".to_vec())),
    ];
    assert_eq!(states(collect(&records, &jobs, &spools).unwrap()), want);
    // The report failed and the work root was wiped: the next start still
    // has each state, kept beside its record.
    std::fs::remove_dir_all(&jobs).unwrap();
    assert_eq!(states(collect(&records, &jobs, &spools).unwrap()), want);
    records.remove("whole").unwrap();
    assert!(!records.state_path("whole").exists());
}

#[test]
fn a_refusal_is_logged_as_what_the_coordinator_answered() {
    assert_eq!(
        refusal(Code::FailedPrecondition),
        "the coordinator answered that the job already ended"
    );
    assert_eq!(
        refusal(Code::PermissionDenied),
        "the coordinator answered that the job is not this daemon's"
    );
    assert_eq!(
        refusal(Code::NotFound),
        "the coordinator answered that it does not know the job"
    );
    let st = Status::permission_denied("job j is not owned by daemon \"d\"");
    let Failure::Refused { code, answer } = Failure::from(st) else {
        panic!("not a refusal")
    };
    assert_eq!(code, Code::PermissionDenied);
    assert!(answer.contains("not owned by daemon"), "{answer}");
}

#[test]
fn the_restart_line_is_a_daemon_error_line() {
    let l = daemon_line(7);
    assert_eq!((l.seq, l.output.as_str()), (7, RESTART_LINE));
    assert_eq!(
        (l.source, l.level),
        (LogSource::Daemon as i32, LogLevel::Error as i32)
    );
}
