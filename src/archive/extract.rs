//! `extract`: the walk's accepted entries written into a work dir.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::walk::{self, Sink};
use super::{Action, ArchiveError, EntryProblem, Limits, Stats};

/// Extracts `archive` into `dest` (created if missing). Refuses the whole
/// archive at the first bad entry; entries before it stay, so callers
/// extract into a fresh dir they remove on failure. Nothing is ever written
/// outside `dest`: every path is created with `O_EXCL` / `mkdir` under
/// parents checked to be real directories, so neither a symlink in the
/// archive nor one already in `dest` is followed.
pub fn extract(archive: &[u8], dest: &Path, limits: &Limits) -> Result<Stats, ArchiveError> {
    fs::create_dir_all(dest).map_err(write_err(dest))?;
    walk::walk(archive, limits, Action::Extract, &mut Writer { dest })
}

struct Writer<'a> {
    dest: &'a Path,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Write { path, source }
}

/// `io::copy`, but a failed read (the archive) and a failed write (the
/// work dir: a full or read-only disk) are told apart, the write naming
/// its file.
fn copy_entry(data: &mut dyn Read, file: &mut fs::File, path: &Path) -> Result<u64, ArchiveError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ArchiveError::Corrupt {
                    action: Action::Extract,
                    source,
                });
            }
        };
        file.write_all(&buf[..n]).map_err(write_err(path))?;
        copied += n as u64;
    }
}

fn conflict(entry: &str) -> ArchiveError {
    ArchiveError::Entry {
        action: Action::Extract,
        entry: entry.to_string(),
        problem: EntryProblem::Conflict,
    }
}

impl Sink for Writer<'_> {
    /// Makes sure the path is a real directory (not a symlink to one).
    fn dir(&mut self, rel: &Path, entry: &str) -> Result<(), ArchiveError> {
        let path = self.dest.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(conflict(entry)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(write_err(&path))?;
                fs::set_permissions(&path, Permissions::from_mode(0o755)).map_err(write_err(&path))
            }
            Err(err) => Err(write_err(&path)(err)),
        }
    }

    fn file(
        &mut self,
        rel: &Path,
        entry: &str,
        mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<u64, ArchiveError> {
        let path: PathBuf = self.dest.join(rel);
        // create_new (O_CREAT|O_EXCL) fails on any existing path, symlinks
        // included, so a planted link can never redirect the write.
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
        {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Err(conflict(entry)),
            Err(err) => return Err(write_err(&path)(err)),
        };
        let copied = copy_entry(&mut data.take(size), &mut file, &path)?;
        // The umask may have narrowed `mode`; the work dir wants it exact.
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(write_err(&path))?;
        Ok(copied)
    }

    fn symlink(&mut self, rel: &Path, entry: &str, target: &Path) -> Result<(), ArchiveError> {
        let path = self.dest.join(rel);
        match std::os::unix::fs::symlink(target, &path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(conflict(entry)),
            Err(err) => Err(write_err(&path)(err)),
        }
    }
}
