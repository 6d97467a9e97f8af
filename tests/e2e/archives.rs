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

use provisionerd::archive::{self, KIB, Limits, MIB};
use provisionerd::proto;
use provisionerd::runner::Outcome;
use tokio_util::sync::CancellationToken;

use crate::common::Coord;
use crate::runner_support::{Harness, import_job};

/// Small limits, so the limit attacks stay small too.
const LIMITS: Limits = Limits {
    max_archive_bytes: MIB,
    max_file_bytes: KIB,
    max_total_bytes: 4 * KIB,
    max_entries: 50,
    max_path_depth: 8,
};

const MAIN_TF: &[u8] = b"resource \"terraform_data\" \"x\" {}\n";

/// A tar written header by header (ustar layout), without any of the tar
/// crate's path checks.
struct Tar(Vec<u8>);

impl Tar {
    /// Every archive starts with a good root `main.tf`, so the attack is
    /// the only thing wrong with it.
    fn new() -> Tar {
        Tar(Vec::new()).file(b"main.tf", MAIN_TF)
    }

    fn entry(mut self, name: &[u8], kind: u8, link: &[u8], data: &[u8], size: u64) -> Tar {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        if size <= 0o77777777777 {
            h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        } else {
            // GNU base-256: what a bomb declaring more than 8 GiB uses.
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0, pad));
        self
    }

    fn file(self, name: &[u8], data: &[u8]) -> Tar {
        self.entry(name, b'0', b"", data, data.len() as u64)
    }

    fn dir(self, name: &[u8]) -> Tar {
        self.entry(name, b'5', b"", b"", 0)
    }

    fn symlink(self, name: &[u8], target: &[u8]) -> Tar {
        self.entry(name, b'2', target, b"", 0)
    }

    /// A GNU long-name record: the next entry's real name.
    fn long_name(self, name: &[u8]) -> Tar {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(b"././@LongLink", b'L', b"", &data, data.len() as u64)
    }

    /// A PAX extended header for the next entry.
    fn pax(self, key: &str, value: &[u8]) -> Tar {
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + body_len.to_string().len();
        if len.to_string().len() != body_len.to_string().len() {
            len += 1;
        }
        let mut record = format!("{len} {key}=").into_bytes();
        record.extend_from_slice(value);
        record.push(b'\n');
        assert_eq!(record.len(), len);
        self.entry(b"PaxHeaders/x", b'x', b"", &record, record.len() as u64)
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        self.0
    }
}

struct Attack {
    what: &'static str,
    archive: Vec<u8>,
    /// What the refusal must say (the entry's name, as printed, and why).
    says: String,
}

fn attack(what: &'static str, archive: Vec<u8>, says: impl Into<String>) -> Attack {
    Attack {
        what,
        archive,
        says: says.into(),
    }
}

/// The attacks. `target` is a sentinel file outside the work dir the
/// absolute ones aim at (a tar name field holds 100 bytes, so it is short).
fn attacks(target: &Path) -> Vec<Attack> {
    let abs = target.to_str().expect("utf-8 temp path").as_bytes();
    let deep = b"a/b/c/d/e/f/g/h/i.tf";
    let pax_escape = format!("{}{}sentinel", "p/".repeat(60), "../".repeat(61));
    let long_escape = format!("{}/../../../../../../../../../sentinel", "q".repeat(120));
    let mut many = Tar::new();
    for i in 0..LIMITS.max_entries {
        many = many.file(format!("f{i}.tf").as_bytes(), b"");
    }
    let mut total = Tar::new();
    for i in 0..5 {
        total = total.file(format!("t{i}.tf").as_bytes(), &[b'#'; 1000]);
    }
    vec![
        attack(
            "absolute path",
            Tar::new().file(abs, b"pwned").finish(),
            format!("entry {} is an absolute path", target.display()),
        ),
        attack(
            "../ escape",
            Tar::new().file(b"../sentinel", b"pwned").finish(),
            "entry ../sentinel escapes the work dir",
        ),
        attack(
            "nested escape",
            Tar::new().file(b"a/../../sentinel", b"pwned").finish(),
            "entry a/../../sentinel escapes the work dir",
        ),
        attack(
            "symlink to /etc, then a file through it",
            Tar::new()
                .symlink(b"etc", b"/etc")
                .file(b"etc/cron.d/pwned", b"* * * * * root sh")
                .finish(),
            "entry etc is a symlink to /etc, which is an absolute path",
        ),
        attack(
            "symlink to an absolute sentinel, then overwrite",
            Tar::new().symlink(b"s", abs).file(b"s", b"pwned").finish(),
            format!(
                "entry s is a symlink to {}, which is an absolute path",
                target.display()
            ),
        ),
        attack(
            "symlink escaping with ../..",
            Tar::new().symlink(b"up", b"../../sentinel").finish(),
            "entry up is a symlink to ../../sentinel, which resolves outside the work dir",
        ),
        attack(
            "symlink chain leaving through another link",
            Tar::new()
                .symlink(b"d1", b".")
                .symlink(b"d2", b"d1/..")
                .file(b"d2/sentinel", b"pwned")
                .finish(),
            "entry d2 is a symlink to d1/.., which resolves outside the work dir",
        ),
        attack(
            "symlink through symlinks to the root and up",
            Tar::new()
                .symlink(b"x", b".")
                .symlink(b"y", b"x/x/x/..")
                .finish(),
            "entry y is a symlink to x/x/x/.., which resolves outside the work dir",
        ),
        attack(
            "symlink chain turned outward after the fact",
            Tar::new()
                .symlink(b"d2", b"d1/..")
                .symlink(b"d1", b".")
                .finish(),
            "entry d2 is a symlink to d1/.., which resolves outside the work dir",
        ),
        attack(
            "hard link outside",
            Tar::new().entry(b"h", b'1', abs, b"", 0).finish(),
            "entry h is a hard link",
        ),
        attack(
            "hard link to an earlier file, then write through it",
            Tar::new()
                .entry(b"h", b'1', b"main.tf", b"", 0)
                .file(b"h", b"pwned")
                .finish(),
            "entry h is a hard link",
        ),
        attack(
            "link inside, then write through the link",
            Tar::new()
                .dir(b"sub")
                .symlink(b"l", b"sub")
                .file(b"l/x.tf", b"pwned")
                .finish(),
            "entry l/x.tf is inside l, which is a symlink",
        ),
        attack(
            "character device",
            Tar::new().entry(b"null", b'3', b"", b"", 0).finish(),
            "entry null is a character device",
        ),
        attack(
            "block device",
            Tar::new().entry(b"sda", b'4', b"", b"", 0).finish(),
            "entry sda is a block device",
        ),
        attack(
            "fifo",
            Tar::new().entry(b"pipe", b'6', b"", b"", 0).finish(),
            "entry pipe is a fifo",
        ),
        attack(
            "duplicate",
            Tar::new().file(b"./main.tf", b"# again").finish(),
            "entry ./main.tf appears more than once",
        ),
        attack(
            "NUL in a name",
            Tar::new()
                .pax("path", b"evil\0.tf")
                .file(b"innocent.tf", b"")
                .finish(),
            "entry evil\\u{0}.tf has a NUL byte in its name",
        ),
        attack(
            "invalid UTF-8",
            Tar::new().file(b"bad\xff.tf", b"").finish(),
            "entry bad\u{fffd}.tf has a name that is not valid UTF-8",
        ),
        attack(
            "too deep",
            Tar::new().file(deep, b"").finish(),
            "entry a/b/c/d/e/f/g/h/i.tf is 9 levels deep, over the --max-path-depth limit of 8",
        ),
        attack(
            "over-long name",
            Tar::new()
                .long_name(&[b'n'; 300])
                .file(b"short", b"")
                .finish(),
            format!(
                "entry {} has a name of 300 bytes, over the 255-byte limit",
                "n".repeat(300)
            ),
        ),
        attack(
            "too many entries",
            many.finish(),
            "entry f49.tf is entry number 51, over the --max-entries limit of 50",
        ),
        attack(
            "file over the limit",
            Tar::new().file(b"big.tf", &[b'#'; 1025]).finish(),
            "entry big.tf is 1025 bytes, over the --max-file-bytes limit of 1KiB",
        ),
        attack(
            "total over the limit",
            total.finish(),
            format!(
                "entry t4.tf brings the file data to {} bytes, over the --max-total-bytes limit of 4KiB",
                MAIN_TF.len() + 5000
            ),
        ),
        attack(
            "tar bomb: a terabyte declared, nothing behind it",
            Tar::new()
                .entry(b"bomb.tf", b'0', b"", b"", 1 << 40)
                .finish(),
            "entry bomb.tf is 1099511627776 bytes, over the --max-file-bytes limit of 1KiB",
        ),
        attack(
            "PAX long name with ..",
            Tar::new()
                .pax("path", pax_escape.as_bytes())
                .file(b"innocent.tf", b"")
                .finish(),
            format!("entry {pax_escape} escapes the work dir"),
        ),
        attack(
            "GNU long name with ..",
            Tar::new()
                .long_name(long_escape.as_bytes())
                .file(b"innocent.tf", b"")
                .finish(),
            format!("entry {long_escape} escapes the work dir"),
        ),
        attack(
            "PAX link target escaping",
            Tar::new()
                .pax("linkpath", b"../../../../sentinel")
                .symlink(b"ok", b"fine")
                .finish(),
            "entry ok is a symlink to ../../../../sentinel, which resolves outside the work dir",
        ),
    ]
}

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
        let err = admin
            .push_template(proto::PushTemplateRequest {
                name: "hostile".into(),
                archive: a.archive,
                ..Default::default()
            })
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
    let err = admin
        .push_template(proto::PushTemplateRequest {
            name: "hostile".into(),
            archive: big.clone(),
            ..Default::default()
        })
        .await
        .expect_err("oversized archive");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().ends_with(&format!(
            "the archive is {} bytes, over the --max-archive-bytes limit of 1MiB",
            big.len()
        )),
        "{}",
        err.message()
    );
    let listed = admin
        .list_templates(proto::ListTemplatesRequest {})
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
    coord
        .admin()
        .await
        .push_template(proto::PushTemplateRequest {
            name: "linked".into(),
            archive: benign.clone(),
            ..Default::default()
        })
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
