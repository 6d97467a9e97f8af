use super::*;
use std::path::PathBuf;

fn record(id: &str, kind: &str) -> JobRecord {
    JobRecord {
        job_id: id.into(),
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
