//! Hostile template archives, built byte by byte (so nothing in the way
//! cleans them up): every one is refused by the coordinator at push
//! (INVALID_ARGUMENT naming the entry, nothing stored) and by the daemon's
//! runner when handed one directly, and nothing is ever written outside
//! the work dir — checked against a snapshot of the dirs around it and
//! sentinel files the attacks aim at.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use provisionerd::archive::{self, MIB};
use provisionerd::proto;
use provisionerd::runner::Outcome;
use tokio_util::sync::CancellationToken;

mod attacks;

use attacks::{LIMITS, Tar, attacks};

use crate::common::Coord;
use crate::runner_support::{Harness, import_job};

/// Every path under `root` with what it is: file contents, link targets,
/// directories; plus the owner-visible mode bits.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).expect("list").flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            let what = if meta.file_type().is_symlink() {
                format!("link {:?}", fs::read_link(&path).expect("readlink"))
            } else if meta.is_dir() {
                todo.push(path.clone());
                "dir".to_string()
            } else {
                let text = fs::read(&path).expect("read");
                format!("file {:?}", String::from_utf8_lossy(&text))
            };
            out.insert(path, format!("{what} mode {:o}", meta.mode()));
        }
    }
    out
}

/// `<tmp>/outer/sentinel` and `<tmp>/outer/work/sentinel`: what `../` and
/// `../../` from a work dir under `work/` reach.
fn plant_sentinels(outer: &Path) {
    fs::create_dir_all(outer.join("work")).expect("mkdir");
    fs::write(outer.join("sentinel"), "untouched").expect("sentinel");
    fs::write(outer.join("work/sentinel"), "untouched").expect("sentinel");
}

#[test]
fn extract_refuses_every_attack_and_writes_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let outer = tmp.path().join("outer");
    plant_sentinels(&outer);
    let before = snapshot(tmp.path());
    let attacks = attacks(&outer.join("sentinel"));
    assert!(attacks.len() >= 12);
    for (i, a) in attacks.iter().enumerate() {
        let checked = archive::check(&a.archive, &LIMITS)
            .expect_err(a.what)
            .to_string();
        assert!(checked.contains(&a.says), "{}: {checked}", a.what);
        let dest = outer.join("work").join(format!("job-{i}"));
        let err = archive::extract(&a.archive, &dest, &LIMITS)
            .expect_err(a.what)
            .to_string();
        assert!(
            err.starts_with("extract template archive: "),
            "{}: {err}",
            a.what
        );
        assert!(
            err.contains(&a.says),
            "{}: {err}\n wanted: {}",
            a.what,
            a.says
        );
        fs::remove_dir_all(&dest).expect("remove work dir");
        assert_eq!(
            snapshot(tmp.path()),
            before,
            "{}: wrote outside the work dir",
            a.what
        );
    }
}

#[tokio::test]
async fn the_runner_refuses_every_attack_and_writes_nothing_outside() {
    let mut h = Harness::new();
    h.cfg.archive_limits = LIMITS;
    let outer = h.root.path().to_path_buf();
    plant_sentinels(&outer);
    fs::create_dir_all(&h.cfg.plugin_cache_dir).unwrap();
    let before = snapshot(&outer);
    for a in attacks(&outer.join("sentinel")) {
        let (outcome, _) = h
            .run(import_job(a.archive, Vec::new()), CancellationToken::new())
            .await;
        let Outcome::Failed { error, .. } = outcome else {
            panic!("{}: not refused: {outcome:?}", a.what);
        };
        assert!(
            error.starts_with("extract template archive: "),
            "{}: {error}",
            a.what
        );
        assert!(error.contains(&a.says), "{}: {error}", a.what);
        assert_eq!(
            snapshot(&outer),
            before,
            "{}: wrote outside the work dir",
            a.what
        );
    }
}

#[tokio::test]
async fn the_coordinator_refuses_every_attack_at_push_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start_with_limits(&tmp.path().join("data"), LIMITS).await;
    let mut admin = coord.admin().await;
    for a in attacks(&tmp.path().join("sentinel")) {
        let header = proto::PushTemplateRequest {
            name: "hostile".into(),
            ..Default::default()
        };
        let err = coord
            .push_archive(header, &a.archive)
            .await
            .expect_err(a.what);
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{}: {err}",
            a.what
        );
        let msg = err.message();
        assert!(
            msg.starts_with("push template \"hostile\": check template archive: "),
            "{}: {msg}",
            a.what
        );
        assert!(msg.contains(&a.says), "{}: {msg}", a.what);
    }
    let big = Tar::new()
        .file(b"pad.tf", &vec![b'#'; MIB as usize])
        .finish();
    let header = proto::PushTemplateRequest {
        name: "hostile".into(),
        ..Default::default()
    };
    let err = coord
        .push_archive(header, &big)
        .await
        .expect_err("oversized archive");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().ends_with(&format!(
            "push template \"hostile\": template archive is {} bytes, over the --max-archive-bytes limit of 1MiB",
            big.len()
        )),
        "{}",
        err.message()
    );
    let listed = admin
        .list_templates(proto::ListTemplatesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .templates;
    assert!(listed.is_empty(), "a hostile push was stored: {listed:?}");
    coord.stop().await;
}

/// A relative symlink that stays inside is fine everywhere: pushed,
/// checked, extracted and imported by terraform (which reads the linked
/// `.tf` file).
#[tokio::test]
async fn an_in_tree_relative_symlink_is_accepted() {
    let benign = Tar::new()
        .file(
            b"modules/shared/outputs.tf.src",
            b"output \"answer\" { value = 42 }\n",
        )
        .symlink(b"outputs.tf", b"modules/shared/outputs.tf.src")
        .symlink(b"shared", b"./modules/../modules/shared")
        .finish();
    let stats = archive::check(&benign, &LIMITS).expect("check");
    assert_eq!((stats.files, stats.symlinks), (2, 2));

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    archive::extract(&benign, &dest, &LIMITS).expect("extract");
    assert_eq!(
        fs::read_to_string(dest.join("shared/outputs.tf.src")).unwrap(),
        "output \"answer\" { value = 42 }\n"
    );

    let coord = Coord::start_with_limits(&tmp.path().join("data"), LIMITS).await;
    let header = proto::PushTemplateRequest {
        name: "linked".into(),
        ..Default::default()
    };
    coord
        .push_archive(header, &benign)
        .await
        .expect("push a template with an in-tree symlink");
    coord.stop().await;

    let mut h = Harness::new();
    h.cfg.archive_limits = LIMITS;
    let (outcome, logs) = h
        .run(import_job(benign, Vec::new()), CancellationToken::new())
        .await;
    assert!(
        matches!(outcome, Outcome::Succeeded { .. }),
        "{outcome:?}\n{logs:#?}"
    );
    h.assert_work_root_empty();
}

#[tokio::test]
async fn limit_flags_and_env_vars_are_validated() {
    use crate::cli::{run, stderr};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();
    let out = run(&["serve", "--data-dir", data, "--max-file-bytes", "0"], &[]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("--max-file-bytes 0: must be at least 1"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &["serve", "--data-dir", data],
        &[("PROVISIONERD_MAX_ENTRIES", "0")],
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("--max-entries 0: must be at least 1"),
        "{}",
        stderr(&out)
    );
    let tf = crate::common::terraform();
    let tf = tf.to_str().unwrap();
    let start = [
        "start",
        "--url",
        "http://127.0.0.1:1",
        "--key",
        "k",
        "--name",
        "d",
        "--terraform-path",
        tf,
    ];
    let out = run(&[&start[..], &["--max-total-bytes", "10XB"]].concat(), &[]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("\"10XB\" is not a size like 10MiB"),
        "{}",
        stderr(&out)
    );
    let out = run(&start, &[("PROVISIONERD_MAX_PATH_DEPTH", "0")]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("--max-path-depth 0: must be at least 1"),
        "{}",
        stderr(&out)
    );
}
