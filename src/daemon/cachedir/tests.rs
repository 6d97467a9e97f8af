use super::*;
use crate::daemon::record::JobRecord;
use crate::process::{self, Spec};
use std::os::unix::fs::MetadataExt;
use tokio::sync::mpsc;

const GRACE: Duration = Duration::from_secs(3);

async fn open(dir: &Path, name: &str) -> Result<CacheDir, DaemonError> {
    CacheDir::open(dir, name, GRACE).await
}

fn build_record(cache: &CacheDir, id: &str) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        job_secret: crate::grpc::Secret::new("pdj_s"),
        kind: "workspace_build".into(),
        started_at_ms: 1,
        work_dir: cache.jobs_dir().join(id),
        finished: None,
    }
}

#[tokio::test]
async fn second_lock_fails_naming_the_holder_and_drop_releases_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let first = open(&dir, "alpha").await.unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(first.plugins_dir().is_dir());

    match open(&dir, "beta").await {
        Err(DaemonError::CacheDirLocked { dir: d, holder }) => {
            assert_eq!(d, dir);
            let pid = format!("name=alpha pid={} host=", std::process::id());
            assert!(holder.starts_with(&pid), "{holder}");
        }
        other => panic!("expected CacheDirLocked, got {other:?}"),
    }

    drop(first);
    let again = open(&dir, "beta").await.unwrap();
    let text = fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
    assert!(text.starts_with("name=beta "), "{text}");
    drop(again);
}

#[tokio::test]
async fn leftover_job_dirs_are_removed_and_runner_config_points_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let leftover = tmp.path().join("jobs/old-job/main.tf");
    fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    fs::write(&leftover, "x").unwrap();
    let plugin = tmp.path().join("plugins/provider");
    fs::create_dir_all(plugin.parent().unwrap()).unwrap();
    fs::write(&plugin, "kept").unwrap();

    let cache = open(tmp.path(), "d").await.unwrap();
    assert!(!leftover.exists());
    assert!(cache.jobs_dir().is_dir());
    assert!(plugin.exists(), "the plugin cache survives restarts");

    let rc = cache.runner_config(
        Path::new("/usr/bin/terraform"),
        Duration::from_secs(3),
        CancellationToken::new(),
        Default::default(),
    );
    assert_eq!(rc.work_root, tmp.path().join("jobs"));
    assert_eq!(rc.plugin_cache_dir, tmp.path().join("plugins"));
    assert_eq!(rc.cancel_grace, Duration::from_secs(3));
}

#[tokio::test]
async fn an_unreported_jobs_state_is_kept_until_it_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path(), "d").await.unwrap();
    let record = build_record(&first, "j1");
    first.records().write(&record).unwrap();
    fs::create_dir_all(&record.work_dir).unwrap();
    fs::write(record.work_dir.join("terraform.tfstate"), "{}").unwrap();
    drop(first);

    let mut again = open(tmp.path(), "d").await.unwrap();
    assert!(!record.work_dir.exists());
    let unfinished = again.take_unfinished();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].record, record);
    assert_eq!(unfinished[0].state.as_deref(), Some(&b"{}"[..]));
    assert!(again.take_unfinished().is_empty());
    // The report failed (coordinator down): the next start still has the
    // state, though the work dir is gone.
    drop(again);
    let mut third = open(tmp.path(), "d").await.unwrap();
    let unfinished = third.take_unfinished();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].state.as_deref(), Some(&b"{}"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_terraform_is_interrupted_and_its_last_state_write_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path(), "d").await.unwrap();
    let record = build_record(&first, "j1");
    first.records().write(&record).unwrap();
    fs::create_dir_all(&record.work_dir).unwrap();
    fs::write(
        record.work_dir.join("terraform.tfstate"),
        r#"{"serial": 1}"#,
    )
    .unwrap();
    // Stands in for a terraform the killed daemon left mid-apply: on
    // SIGINT it writes its final state, then exits.
    let spec = Spec {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            r#"trap 'echo "{\"serial\": 2}" > terraform.tfstate; exit 1' INT; echo up > started; while true; do sleep 1; done"#.into(),
        ],
        cwd: record.work_dir.clone(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
    };
    let (tx, _rx) = mpsc::channel(8);
    let leftover = tokio::spawn(async move {
        let never = CancellationToken::new();
        process::run(spec, tx, &never, &never, Duration::from_secs(1)).await
    });
    let started = tokio::time::Instant::now();
    while !record.work_dir.join("started").exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);

    let mut again = open(tmp.path(), "d").await.unwrap();
    let unfinished = again.take_unfinished();
    assert_eq!(
        unfinished[0].state.as_deref().map(String::from_utf8_lossy),
        Some("{\"serial\": 2}\n".into())
    );
    let exit = tokio::time::timeout(Duration::from_secs(10), leftover)
        .await
        .expect("the leftover is reaped")
        .unwrap()
        .unwrap();
    assert_eq!(exit.code, Some(1), "it exited on its SIGINT, not SIGKILL");
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

/// Chowning to another user needs root (CAP_CHOWN). Tests run as root here
/// and in CI; elsewhere these say so and check nothing rather than fail.
fn running_as_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("{test}: skipped, not running as root (it chowns a dir to another uid)");
    }
    root
}

/// The pod's uid, which owns the chart's cache volume (with its fsGroup).
const OTHER_UID: u32 = 65532;

#[tokio::test]
async fn a_root_owned_by_another_user_keeps_its_mode_and_gets_private_subdirs() {
    if !running_as_root("a_root_owned_by_another_user_keeps_its_mode_and_gets_private_subdirs") {
        return;
    }
    // As kubelet makes an emptyDir for a pod with an fsGroup: someone
    // else's, world-writable, setgid.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    fs::set_permissions(&dir, Permissions::from_mode(0o2777)).unwrap();

    let cache = open(&dir, "d").await.unwrap();
    let meta = fs::metadata(&dir).unwrap();
    let mode = format!("{:o}", meta.permissions().mode() & 0o7777);
    assert_eq!(mode, "2777", "the root's mode is kept");
    assert_eq!(meta.uid(), OTHER_UID);
    let me = nix::unistd::geteuid().as_raw();
    for sub in [
        cache.plugins_dir(),
        cache.jobs_dir(),
        cache.records_dir(),
        cache.spool_dir(),
    ] {
        let meta = fs::metadata(&sub).unwrap();
        assert_eq!(meta.uid(), me, "{}", sub.display());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{}",
            sub.display()
        );
    }
}

#[tokio::test]
async fn a_subdir_owned_by_another_user_is_refused_naming_it() {
    if !running_as_root("a_subdir_owned_by_another_user_is_refused_naming_it") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    fs::create_dir(&plugins).unwrap();
    std::os::unix::fs::chown(&plugins, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    fs::set_permissions(&plugins, Permissions::from_mode(0o700)).unwrap();

    let err = open(tmp.path(), "d").await.unwrap_err().to_string();
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(
        err,
        format!(
            "create plugin cache {}: owned by uid {OTHER_UID}, not by the daemon's uid {me}: \
             remove it or chown it",
            plugins.display()
        )
    );
}
