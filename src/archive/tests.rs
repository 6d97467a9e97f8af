use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;

fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
    fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Name, type, data (the target, for links).
type Raw<'a> = (&'a [u8], EntryType, &'a [u8]);

/// An archive whose entries' names are written into the headers as-is,
/// bypassing the tar crate's own path checks. For links, `data` is the
/// link target instead.
fn raw_archive(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        let is_link = *kind == EntryType::Symlink || *kind == EntryType::Link;
        if is_link {
            header.as_old_mut().linkname[..data.len()].copy_from_slice(data);
        }
        let data: &[u8] = if is_link { b"" } else { data };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }
    builder.into_inner().expect("finish archive")
}

/// Checks `archive`, then extracts it into `<tmp>/dest`; both must refuse
/// it with the same problem, and nothing may appear beside `dest`.
fn refused(archive: &[u8], limits: &Limits) -> String {
    let checked = check(archive, limits)
        .expect_err("check must refuse a hostile archive")
        .to_string();
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("dest");
    let err = extract(archive, &dest, limits)
        .expect_err("hostile archive must be refused")
        .to_string();
    let beside: Vec<_> = fs::read_dir(root.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside, vec!["dest"], "something was written outside dest");
    assert_eq!(
        checked.strip_prefix("check "),
        err.strip_prefix("extract "),
        "check and extract disagree"
    );
    err
}

#[test]
fn tar_and_extract_round_trip_deterministically() {
    let src = tempfile::tempdir().expect("tempdir");
    write(&src.path().join("main.tf"), "resource {}", 0o600);
    write(&src.path().join("scripts/run.sh"), "#!/bin/sh\n", 0o700);
    write(&src.path().join("terraform.tfstate"), "{}", 0o644);
    write(
        &src.path().join("sub/terraform.tfstate.backup"),
        "{}",
        0o644,
    );
    write(&src.path().join(".terraform/providers/x"), "bin", 0o755);
    write(&src.path().join(".git/HEAD"), "ref", 0o644);
    let first = tar_dir(src.path()).expect("tar");
    fs::set_permissions(src.path().join("main.tf"), Permissions::from_mode(0o640)).expect("chmod");
    assert_eq!(
        tar_dir(src.path()).expect("tar again"),
        first,
        "tar is not deterministic"
    );

    let dest = tempfile::tempdir().expect("tempdir");
    let stats = extract(&first, dest.path(), &Limits::default()).expect("extract");
    let expected = Stats {
        entries: 4,
        files: 2,
        dirs: 2,
        symlinks: 0,
        bytes: 21,
    };
    assert_eq!(stats, expected);
    assert_eq!(check(&first, &Limits::default()).expect("check"), expected);
    assert_eq!(
        fs::read_to_string(dest.path().join("main.tf")).expect("read"),
        "resource {}"
    );
    assert_eq!(mode_of(&dest.path().join("main.tf")), 0o644);
    assert_eq!(mode_of(&dest.path().join("scripts/run.sh")), 0o755);
    for skipped in [
        "terraform.tfstate",
        "sub/terraform.tfstate.backup",
        ".terraform",
        ".git",
    ] {
        assert!(
            !dest.path().join(skipped).exists(),
            "{skipped} was archived"
        );
    }
}

#[test]
fn tar_dir_refuses_symlinks_naming_them() {
    let src = tempfile::tempdir().expect("tempdir");
    write(&src.path().join("main.tf"), "", 0o644);
    symlink("/etc/passwd", src.path().join("passwd")).expect("symlink");
    let err = tar_dir(src.path())
        .expect_err("symlink must be refused")
        .to_string();
    assert!(
        err.starts_with("tar template dir: ") && err.contains("passwd is a symlink"),
        "{err}"
    );
}

#[test]
fn refuses_paths_leaving_dest_or_badly_named() {
    let limits = Limits::default();
    let cases: [(&[u8], &str); 5] = [
        (b"../evil", "entry ../evil escapes the work dir"),
        (b"a/../../evil", "entry a/../../evil escapes the work dir"),
        (b"/abs", "entry /abs is an absolute path"),
        (
            b"bad\xffname",
            "entry bad\u{fffd}name has a name that is not valid UTF-8",
        ),
        (
            b"a/b/c/d",
            "entry a/b/c/d is 4 levels deep, over the --max-path-depth limit of 3",
        ),
    ];
    for (name, want) in cases {
        let limits = Limits {
            max_path_depth: 3,
            ..limits
        };
        let err = refused(&raw_archive(&[(name, EntryType::Regular, b"x")]), &limits);
        assert_eq!(err, format!("extract template archive: {want}"));
    }
}

#[test]
fn refuses_hard_links_and_special_files() {
    let limits = Limits::default();
    let err = refused(
        &raw_archive(&[(b"h", EntryType::Link, b"main.tf")]),
        &limits,
    );
    assert!(
        err.ends_with("entry h is a hard link; hard links are not allowed in a template"),
        "{err}"
    );
    for (kind, what) in [
        (EntryType::Fifo, "fifo"),
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
    ] {
        let err = refused(&raw_archive(&[(b"dev", kind, b"")]), &limits);
        assert!(
            err.ends_with(&format!(
                "entry dev is a {what}; only regular files, directories and symlinks are allowed"
            )),
            "{err}"
        );
    }
}

#[test]
fn symlinks_must_resolve_inside() {
    let limits = Limits::default();
    let cases: [(&[Raw<'_>], &str); 6] = [
        (
            &[(b"passwd", EntryType::Symlink, b"/etc/passwd")],
            "entry passwd is a symlink to /etc/passwd, which is an absolute path",
        ),
        (
            &[(b"a/up", EntryType::Symlink, b"../../x")],
            "entry a/up is a symlink to ../../x, which resolves outside the work dir",
        ),
        (
            // Each link alone stays inside; through `d1` the second leaves.
            &[
                (b"d1", EntryType::Symlink, b"."),
                (b"d2", EntryType::Symlink, b"d1/.."),
            ],
            "entry d2 is a symlink to d1/.., which resolves outside the work dir",
        ),
        (
            // Judged again at the end: `d1` became a link after `d2`.
            &[
                (b"d2", EntryType::Symlink, b"d1/.."),
                (b"d1", EntryType::Symlink, b"."),
            ],
            "entry d2 is a symlink to d1/.., which resolves outside the work dir",
        ),
        (
            &[
                (b"a", EntryType::Symlink, b"b"),
                (b"b", EntryType::Symlink, b"a/x"),
            ],
            "entry a is a symlink to b, which goes through more than 40 symlinks (a loop?)",
        ),
        (
            // A link inside, then a file written through it.
            &[
                (b"sub", EntryType::Directory, b""),
                (b"l", EntryType::Symlink, b"sub"),
                (b"l/x.tf", EntryType::Regular, b"x"),
            ],
            "entry l/x.tf is inside l, which is a symlink; nothing is written through a symlink",
        ),
    ];
    for (entries, want) in cases {
        let err = refused(&raw_archive(entries), &limits);
        assert_eq!(err, format!("extract template archive: {want}"));
    }
}

#[test]
fn refuses_sparse_files() {
    // Sparse entries need a GNU header; their declared real size can be
    // far over what the archive holds.
    let mut header = Header::new_gnu();
    header.set_path("sparse.tf").expect("path");
    header.set_entry_type(EntryType::GNUSparse);
    header.set_size(4);
    let gnu = header.as_gnu_mut().expect("gnu");
    gnu.realsize.copy_from_slice(b"77777777777\0");
    gnu.sparse[0].offset.copy_from_slice(b"77777777773\0");
    gnu.sparse[0].numbytes.copy_from_slice(b"00000000004\0");
    header.set_cksum();
    let mut archive = header.as_bytes().to_vec();
    archive.extend_from_slice(b"data");
    archive.resize(512 * 2 + 1024, 0);
    let err = refused(&archive, &Limits::default());
    assert!(err.ends_with("entry sparse.tf is a sparse file; only regular files, directories and symlinks are allowed"), "{err}");
}

#[test]
fn in_tree_relative_symlinks_extract() {
    let archive = raw_archive(&[
        (b"modules/net/main.tf", EntryType::Regular, b"# net"),
        (b"shared.tf", EntryType::Regular, b"# shared"),
        (
            b"modules/net/shared.tf",
            EntryType::Symlink,
            b"../../shared.tf",
        ),
        (b"net", EntryType::Symlink, b"./modules/net"),
    ]);
    let stats = check(&archive, &Limits::default()).expect("check");
    assert_eq!((stats.files, stats.symlinks, stats.dirs), (2, 2, 2));
    let dest = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        extract(&archive, dest.path(), &Limits::default()).expect("extract"),
        stats
    );
    assert_eq!(
        fs::read_to_string(dest.path().join("net/shared.tf")).expect("read through links"),
        "# shared"
    );
}

#[test]
fn refuses_duplicates_and_conflicts() {
    let limits = Limits::default();
    let dup = raw_archive(&[
        (b"a.tf", EntryType::Regular, b"1"),
        (b"./a.tf", EntryType::Regular, b"2"),
    ]);
    assert_eq!(
        refused(&dup, &limits),
        "extract template archive: entry ./a.tf appears more than once"
    );
    let under_file = raw_archive(&[
        (b"a", EntryType::Regular, b"1"),
        (b"a/b", EntryType::Regular, b"2"),
    ]);
    assert_eq!(
        refused(&under_file, &limits),
        "extract template archive: entry a/b is inside a, which is not a directory"
    );
    let file_over_dir = raw_archive(&[
        (b"a/b", EntryType::Regular, b"1"),
        (b"a", EntryType::Regular, b"2"),
    ]);
    assert!(
        refused(&file_over_dir, &limits)
            .ends_with("entry a conflicts with an existing file, directory or symlink")
    );
    // A directory entry after its contents is fine (not a duplicate).
    let late_dir = raw_archive(&[
        (b"a/b", EntryType::Regular, b"1"),
        (b"a/", EntryType::Directory, b""),
    ]);
    check(&late_dir, &limits).expect("late directory entry");
}

#[test]
fn limits_refuse_before_writing_the_entry() {
    let limits = Limits {
        max_archive_bytes: MIB,
        max_file_bytes: 4,
        max_total_bytes: 6,
        max_entries: 3,
        max_path_depth: 32,
    };
    let err = refused(
        &raw_archive(&[(b"big", EntryType::Regular, b"12345")]),
        &limits,
    );
    assert_eq!(
        err,
        "extract template archive: entry big is 5 bytes, over the --max-file-bytes limit of 4B"
    );
    let total = raw_archive(&[
        (b"a", EntryType::Regular, b"1234"),
        (b"b", EntryType::Regular, b"1234"),
    ]);
    let dest = tempfile::tempdir().expect("tempdir");
    let err = extract(&total, dest.path(), &limits)
        .expect_err("total")
        .to_string();
    assert_eq!(
        err,
        "extract template archive: entry b brings the file data to 8 bytes, over the \
         --max-total-bytes limit of 6B"
    );
    assert!(dest.path().join("a").exists() && !dest.path().join("b").exists());

    let many: Vec<_> = [b"a", b"b", b"c", b"d"]
        .map(|n| (n.as_slice(), EntryType::Directory, b"".as_slice()))
        .to_vec();
    let dest = tempfile::tempdir().expect("tempdir");
    let err = extract(&raw_archive(&many), dest.path(), &limits)
        .expect_err("count")
        .to_string();
    assert_eq!(
        err,
        "extract template archive: entry d is entry number 4, over the --max-entries limit of 3"
    );
    assert!(!dest.path().join("d").exists());

    let big = vec![0u8; 2 * MIB as usize];
    let err = check(&big, &limits).expect_err("archive size").to_string();
    assert_eq!(
        err,
        "check template archive: the archive is 2097152 bytes, over the --max-archive-bytes \
         limit of 1MiB"
    );
}

#[test]
fn a_huge_declared_size_is_refused_without_reading() {
    // A header claiming 1 TiB with no data behind it.
    let mut header = Header::new_gnu();
    header.set_path("bomb.tf").expect("path");
    header.set_size(1 << 40);
    header.set_entry_type(EntryType::Regular);
    header.set_cksum();
    let mut archive = header.as_bytes().to_vec();
    archive.extend_from_slice(&[0; 1024]);
    let err = refused(&archive, &Limits::default());
    assert_eq!(
        err,
        "extract template archive: entry bomb.tf is 1099511627776 bytes, over the \
         --max-file-bytes limit of 10MiB"
    );
}

#[test]
fn long_names_are_checked_like_short_ones() {
    // GNU long name and PAX path records carry names past 100 bytes; the
    // tar crate's Builder writes the GNU form for a long `set_path`.
    let long = format!("{}/../../../etc/cron.d/x", "d/".repeat(60));
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = Header::new_gnu();
    header.set_size(1);
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    // append_data refuses `..`; the long-name record is written by hand.
    let mut name_header = Header::new_gnu();
    name_header.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
    name_header.set_entry_type(EntryType::GNULongName);
    name_header.set_size(long.len() as u64 + 1);
    name_header.set_cksum();
    let mut name = long.clone().into_bytes();
    name.push(0);
    builder
        .append(&name_header, name.as_slice())
        .expect("long name");
    header.as_gnu_mut().expect("gnu").name[..5].copy_from_slice(b"short");
    header.set_cksum();
    builder.append(&header, &b"x"[..]).expect("entry");
    let archive = builder.into_inner().expect("finish");
    let err = refused(&archive, &Limits::default());
    assert_eq!(
        err,
        format!("extract template archive: entry {long} escapes the work dir")
    );

    // NUL inside a long name (a short header cannot hold one).
    let mut builder = tar::Builder::new(Vec::new());
    let mut pax = Vec::new();
    let record = b"path=a\0b.tf\n";
    pax.extend_from_slice(format!("{} ", record.len() + 3).as_bytes());
    pax.extend_from_slice(record);
    let mut pax_header = Header::new_ustar();
    pax_header.set_path("pax").expect("path");
    pax_header.set_entry_type(EntryType::XHeader);
    pax_header.set_size(pax.len() as u64);
    pax_header.set_cksum();
    builder.append(&pax_header, pax.as_slice()).expect("pax");
    let mut header = Header::new_ustar();
    header.set_path("short").expect("path");
    header.set_size(0);
    header.set_cksum();
    builder.append(&header, io::empty()).expect("entry");
    let archive = builder.into_inner().expect("finish");
    let err = refused(&archive, &Limits::default());
    assert_eq!(
        err,
        "extract template archive: entry a\\u{0}b.tf has a NUL byte in its name"
    );
}

#[test]
fn never_writes_through_an_existing_symlink() {
    let root = tempfile::tempdir().expect("tempdir");
    let outside = root.path().join("outside");
    let dest = root.path().join("dest");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::create_dir_all(&dest).expect("mkdir");
    symlink(&outside, dest.join("sub")).expect("symlink");
    symlink(outside.join("file"), dest.join("file")).expect("symlink");
    for name in [b"sub/x.tf".as_slice(), b"file"] {
        let archive = raw_archive(&[(name, EntryType::Regular, b"x")]);
        let err = extract(&archive, &dest, &Limits::default())
            .expect_err("must refuse")
            .to_string();
        assert!(
            err.ends_with("conflicts with an existing file, directory or symlink"),
            "{err}"
        );
    }
    assert_eq!(fs::read_dir(&outside).expect("list").count(), 0);
}

#[test]
fn names_in_messages_cannot_forge_lines() {
    assert_eq!(
        walk::display_name(b"a\nERROR fake\x1b[31m\0\xff"),
        "a\\nERROR fake\\u{1b}[31m\\u{0}\u{fffd}"
    );
}
