use super::*;

#[test]
fn second_lock_fails_naming_the_holder_and_drop_releases_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let first = CacheDir::open(&dir, "alpha").unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(first.plugins_dir().is_dir());

    match CacheDir::open(&dir, "beta") {
        Err(DaemonError::CacheDirLocked { dir: d, holder }) => {
            assert_eq!(d, dir);
            assert_eq!(holder, format!("name=alpha pid={}", std::process::id()));
        }
        other => panic!("expected CacheDirLocked, got {other:?}"),
    }

    drop(first);
    let again = CacheDir::open(&dir, "beta").unwrap();
    let text = fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
    assert!(text.starts_with("name=beta "), "{text}");
    drop(again);
}

#[test]
fn leftover_job_dirs_are_removed_and_runner_config_points_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let leftover = tmp.path().join("jobs/old-job/main.tf");
    fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    fs::write(&leftover, "x").unwrap();
    let plugin = tmp.path().join("plugins/provider");
    fs::create_dir_all(plugin.parent().unwrap()).unwrap();
    fs::write(&plugin, "kept").unwrap();

    let cache = CacheDir::open(tmp.path(), "d").unwrap();
    assert!(!leftover.exists());
    assert!(cache.jobs_dir().is_dir());
    assert!(plugin.exists(), "the plugin cache survives restarts");

    let rc = cache.runner_config(
        Path::new("/usr/bin/terraform"),
        Duration::from_secs(3),
        CancellationToken::new(),
    );
    assert_eq!(rc.work_root, tmp.path().join("jobs"));
    assert_eq!(rc.plugin_cache_dir, tmp.path().join("plugins"));
    assert_eq!(rc.cancel_grace, Duration::from_secs(3));
}

#[test]
fn an_unreported_jobs_state_is_read_before_the_work_root_is_wiped() {
    let tmp = tempfile::tempdir().unwrap();
    let first = CacheDir::open(tmp.path(), "d").unwrap();
    let record = crate::daemon::record::JobRecord {
        job_id: "j1".into(),
        kind: "workspace_build".into(),
        started_at_ms: 1,
        work_dir: first.jobs_dir().join("j1"),
        finished: None,
    };
    first.records().write(&record).unwrap();
    fs::create_dir_all(&record.work_dir).unwrap();
    fs::write(record.work_dir.join("terraform.tfstate"), "{}").unwrap();
    drop(first);

    let mut again = CacheDir::open(tmp.path(), "d").unwrap();
    assert!(!record.work_dir.exists());
    let unfinished = again.take_unfinished();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].record, record);
    assert_eq!(unfinished[0].state.as_deref(), Some(&b"{}"[..]));
    assert!(again.take_unfinished().is_empty());
}

#[test]
fn terraform_check_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("terraform");
    let err = check_terraform(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("terraform not found at {}", missing.display())),
        "{err}"
    );

    fs::write(&missing, "#!/bin/sh\n").unwrap();
    let err = check_terraform(&missing).unwrap_err().to_string();
    assert!(err.ends_with("not an executable file"), "{err}");

    fs::set_permissions(&missing, Permissions::from_mode(0o755)).unwrap();
    check_terraform(&missing).unwrap();
}
