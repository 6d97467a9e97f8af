//! Template archives: tar a template directory deterministically, and extract
//! an archive into a work dir without letting it write anywhere else.
//!
//! Archives come from the coordinator, i.e. from whoever pushed the template,
//! so extraction treats them as hostile: only regular files and directories,
//! only relative paths that stay below the destination, bounded sizes, and
//! nothing is ever written through a symlink.

use std::collections::HashSet;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::{EntryType, Header};

/// Bounds for [`extract`]; exceeding one fails the extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 10 * 1024 * 1024,
            max_total_bytes: 100 * 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

/// What [`extract`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractStats {
    pub files: usize,
    pub dirs: usize,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "tar template dir: {} is a symlink; a template may contain only regular files and directories",
        .path.display()
    )]
    Symlink { path: PathBuf },
    #[error("tar template dir: {} is not a regular file or directory", .path.display())]
    NotRegular { path: PathBuf },
    #[error("tar template dir: read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("tar template dir: add {} to the archive: {source}", .path.display())]
    Append {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("extract template archive: entry {entry} {problem}")]
    Entry {
        entry: String,
        problem: EntryProblem,
    },
    #[error("extract template archive: more than {max} entries")]
    TooManyEntries { max: usize },
    #[error("extract template archive: more than {max} bytes of file data")]
    TooLarge { max: u64 },
    #[error("extract template archive: read archive: {0}")]
    Corrupt(#[source] io::Error),
    #[error("extract template archive: write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why one archive entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    #[error("is an absolute path")]
    Absolute,
    #[error("escapes the work dir")]
    EscapesWorkDir,
    #[error("has an empty path")]
    EmptyPath,
    #[error("is a symlink or hard link; only regular files and directories are allowed")]
    Link,
    #[error("is a {0}; only regular files and directories are allowed")]
    Special(&'static str),
    #[error("appears more than once")]
    Duplicate,
    #[error("is {size} bytes, over the {max}-byte limit per file")]
    FileTooLarge { size: u64, max: u64 },
    #[error("conflicts with an existing file, directory or symlink")]
    Conflict,
}

/// Tars `dir` with relative paths, sorted, with zeroed owners and times, so
/// the same tree always gives the same bytes. Skips `.terraform` dirs, `.git`
/// and `*.tfstate*` files (local state must never travel with a template).
pub fn tar_dir(dir: &Path) -> Result<Vec<u8>, ArchiveError> {
    let mut builder = tar::Builder::new(Vec::new());
    add_dir(&mut builder, dir, Path::new(""))?;
    builder.into_inner().map_err(|source| ArchiveError::Append {
        path: dir.to_path_buf(),
        source,
    })
}

fn add_dir(
    builder: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &Path,
) -> Result<(), ArchiveError> {
    let here = root.join(rel);
    let read = |source| ArchiveError::Read {
        path: here.clone(),
        source,
    };
    let mut names = fs::read_dir(&here)
        .map_err(read)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(|source| ArchiveError::Read {
            path: path.clone(),
            source,
        })?;
        let is_state = name.to_string_lossy().contains(".tfstate");
        let mut header = Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let append = |source| ArchiveError::Append {
            path: path.clone(),
            source,
        };
        if name == ".git" || (meta.is_dir() && name == ".terraform") || (meta.is_file() && is_state)
        {
            continue;
        } else if meta.file_type().is_symlink() {
            return Err(ArchiveError::Symlink { path });
        } else if meta.is_dir() {
            header.set_entry_type(EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, &rel, io::empty())
                .map_err(append)?;
            add_dir(builder, root, &rel)?;
        } else if meta.is_file() {
            let data = fs::read(&path).map_err(|source| ArchiveError::Read {
                path: path.clone(),
                source,
            })?;
            header.set_entry_type(EntryType::Regular);
            header.set_mode(file_mode(meta.permissions().mode()));
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, &rel, data.as_slice())
                .map_err(append)?;
        } else {
            return Err(ArchiveError::NotRegular { path });
        }
    }
    Ok(())
}

/// Only the exec bit survives: owners and odd permissions of the pusher's
/// machine mean nothing in a work dir.
fn file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// Extracts `archive` into `dest` (created if missing). Refuses the whole
/// archive at the first bad entry; files written before it stay, so callers
/// extract into a fresh dir they remove on failure.
pub fn extract(archive: &[u8], dest: &Path, limits: &Limits) -> Result<ExtractStats, ArchiveError> {
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Write { path, source }
    };
    fs::create_dir_all(dest).map_err(write(dest))?;
    let mut archive = tar::Archive::new(archive);
    let mut seen = HashSet::new();
    let mut stats = ExtractStats::default();
    let mut count = 0usize;
    let mut total = 0u64;
    for entry in archive.entries().map_err(ArchiveError::Corrupt)? {
        let mut entry = entry.map_err(ArchiveError::Corrupt)?;
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            continue; // pax metadata for the whole archive; nothing to write
        }
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |problem| ArchiveError::Entry {
            entry: name.clone(),
            problem,
        };
        let rel = relative_path(&entry.path().map_err(ArchiveError::Corrupt)?).map_err(refuse)?;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Link | EntryType::Symlink => return Err(refuse(EntryProblem::Link)),
            other => return Err(refuse(EntryProblem::Special(special_name(other)))),
        }
        if rel.as_os_str().is_empty() {
            if kind == EntryType::Directory {
                continue; // "./": the destination itself
            }
            return Err(refuse(EntryProblem::EmptyPath));
        }
        if !seen.insert(rel.clone()) {
            return Err(refuse(EntryProblem::Duplicate));
        }
        let target = dest.join(&rel);
        let parents: Vec<&Path> = rel.ancestors().skip(1).collect();
        for parent in parents
            .into_iter()
            .rev()
            .filter(|p| !p.as_os_str().is_empty())
        {
            ensure_dir(&dest.join(parent)).map_err(|e| e.on(&name))?;
        }
        if kind == EntryType::Directory {
            ensure_dir(&target).map_err(|e| e.on(&name))?;
            stats.dirs += 1;
            continue;
        }
        let size = entry.size();
        if size > limits.max_file_bytes {
            return Err(refuse(EntryProblem::FileTooLarge {
                size,
                max: limits.max_file_bytes,
            }));
        }
        total += size;
        if total > limits.max_total_bytes {
            return Err(ArchiveError::TooLarge {
                max: limits.max_total_bytes,
            });
        }
        let mode = file_mode(entry.header().mode().map_err(ArchiveError::Corrupt)?);
        // create_new (O_CREAT|O_EXCL) fails on any existing path, symlinks
        // included, so a planted link can never redirect the write.
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&target)
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(refuse(EntryProblem::Conflict));
            }
            Err(err) => return Err(write(&target)(err)),
        };
        let copied =
            io::copy(&mut (&mut entry).take(size), &mut file).map_err(ArchiveError::Corrupt)?;
        if copied != size {
            let msg = format!("entry {name} is truncated ({copied} of {size} bytes)");
            return Err(ArchiveError::Corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                msg,
            )));
        }
        // The umask may have narrowed `mode`; the work dir wants it exact.
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(write(&target))?;
        stats.files += 1;
        stats.bytes += size;
    }
    Ok(stats)
}

/// `path` as a plain relative path, refusing anything that could leave the
/// destination. `.` components are dropped.
fn relative_path(path: &Path) -> Result<PathBuf, EntryProblem> {
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(EntryProblem::EscapesWorkDir),
            Component::RootDir | Component::Prefix(_) => return Err(EntryProblem::Absolute),
        }
    }
    Ok(rel)
}

fn special_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "fifo",
        EntryType::GNUSparse => "sparse file",
        _ => "entry of an unsupported type",
    }
}

enum DirError {
    Conflict,
    Io(PathBuf, io::Error),
}

impl DirError {
    fn on(self, entry: &str) -> ArchiveError {
        match self {
            DirError::Conflict => ArchiveError::Entry {
                entry: entry.to_string(),
                problem: EntryProblem::Conflict,
            },
            DirError::Io(path, source) => ArchiveError::Write { path, source },
        }
    }
}

/// Makes sure `path` is a real directory (not a symlink to one).
fn ensure_dir(path: &Path) -> Result<(), DirError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(DirError::Conflict),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(path).map_err(|e| DirError::Io(path.to_path_buf(), e))?;
            fs::set_permissions(path, Permissions::from_mode(0o755))
                .map_err(|e| DirError::Io(path.to_path_buf(), e))
        }
        Err(err) => Err(DirError::Io(path.to_path_buf(), err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, text: &str, mode: u32) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
        fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    /// An archive holding one entry with `name` written into the header
    /// as-is, bypassing the tar crate's own path checks.
    fn raw_archive(entries: &[(&[u8], EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut header = Header::new_old();
            header.as_old_mut().name[..name.len()].copy_from_slice(name);
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            if *kind == EntryType::Symlink || *kind == EntryType::Link {
                header.set_link_name("/etc/passwd").expect("link name");
            }
            header.set_cksum();
            builder.append(&header, *data).expect("append");
        }
        builder.into_inner().expect("finish archive")
    }

    /// Extracts into `<tmp>/dest` and checks nothing appeared beside it.
    fn extract_hostile(archive: &[u8], limits: &Limits) -> String {
        let root = tempfile::tempdir().expect("tempdir");
        let dest = root.path().join("dest");
        let err = extract(archive, &dest, limits).expect_err("hostile archive must be refused");
        let beside: Vec<_> = fs::read_dir(root.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(beside, vec!["dest"], "something was written outside dest");
        err.to_string()
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
        fs::set_permissions(src.path().join("main.tf"), Permissions::from_mode(0o640))
            .expect("chmod");
        assert_eq!(
            tar_dir(src.path()).expect("tar again"),
            first,
            "tar is not deterministic"
        );

        let dest = tempfile::tempdir().expect("tempdir");
        let stats = extract(&first, dest.path(), &Limits::default()).expect("extract");
        assert_eq!(
            stats,
            ExtractStats {
                files: 2,
                dirs: 2,
                bytes: 21
            }
        );
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
    fn refuses_paths_leaving_dest() {
        let limits = Limits::default();
        let err = extract_hostile(
            &raw_archive(&[(b"../evil", EntryType::Regular, b"x")]),
            &limits,
        );
        assert_eq!(
            err,
            "extract template archive: entry ../evil escapes the work dir"
        );
        let err = extract_hostile(
            &raw_archive(&[(b"a/../../evil", EntryType::Regular, b"x")]),
            &limits,
        );
        assert_eq!(
            err,
            "extract template archive: entry a/../../evil escapes the work dir"
        );
        let err = extract_hostile(
            &raw_archive(&[(b"/abs", EntryType::Regular, b"x")]),
            &limits,
        );
        assert_eq!(
            err,
            "extract template archive: entry /abs is an absolute path"
        );
    }

    #[test]
    fn refuses_links_and_special_files() {
        let limits = Limits::default();
        for kind in [EntryType::Symlink, EntryType::Link] {
            let err = extract_hostile(&raw_archive(&[(b"passwd", kind, b"")]), &limits);
            assert!(
                err.contains("entry passwd is a symlink or hard link"),
                "{err}"
            );
        }
        let err = extract_hostile(&raw_archive(&[(b"pipe", EntryType::Fifo, b"")]), &limits);
        assert!(err.contains("entry pipe is a fifo"), "{err}");
        let err = extract_hostile(&raw_archive(&[(b"dev", EntryType::Char, b"")]), &limits);
        assert!(err.contains("entry dev is a character device"), "{err}");
    }

    #[test]
    fn refuses_duplicates_and_limits() {
        let dup = raw_archive(&[
            (b"a.tf", EntryType::Regular, b"1"),
            (b"./a.tf", EntryType::Regular, b"2"),
        ]);
        let err = extract_hostile(&dup, &Limits::default());
        assert_eq!(
            err,
            "extract template archive: entry ./a.tf appears more than once"
        );

        let limits = Limits {
            max_file_bytes: 4,
            max_total_bytes: 6,
            max_entries: 3,
        };
        let err = extract_hostile(
            &raw_archive(&[(b"big", EntryType::Regular, b"12345")]),
            &limits,
        );
        assert_eq!(
            err,
            "extract template archive: entry big is 5 bytes, over the 4-byte limit per file"
        );
        let total = raw_archive(&[
            (b"a", EntryType::Regular, b"1234"),
            (b"b", EntryType::Regular, b"1234"),
        ]);
        let err = extract_hostile(&total, &limits);
        assert_eq!(
            err,
            "extract template archive: more than 6 bytes of file data"
        );
        let many: Vec<_> = [b"a", b"b", b"c", b"d"]
            .map(|n| (n.as_slice(), EntryType::Directory, b"".as_slice()))
            .to_vec();
        let err = extract_hostile(&raw_archive(&many), &limits);
        assert_eq!(err, "extract template archive: more than 3 entries");
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
}
