//! An exclusive, non-blocking lock on a directory, held for a process's
//! life: the daemon's cache dir and the coordinator's data dir. A second
//! process that tries the same directory learns who holds it (the line the
//! holder wrote into the lock file: who, pid, host) and gives up at once.
//!
//! `flock(2)` on a lock file inside the directory: the kernel drops it when
//! the holder exits however it exits (even `kill -9`), so a stale lock never
//! needs clearing by hand. Each `acquire` opens its own file description,
//! so two acquires in one process exclude each other too (tests rely on
//! it). The file is opened close-on-exec: terraform and other children
//! never inherit the lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released when dropped. The lock file itself stays, because
/// unlinking it would let a third process lock a fresh inode while a second
/// still holds (or waits on) the old one.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    _file: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock; `holder` is what it wrote.
    #[error("held by {holder}")]
    Held { holder: String },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl DirLock {
    /// Locks `dir` (which must exist) through `dir/file_name`, without
    /// waiting, and records `who pid=PID host=HOST` in the file for the
    /// next process that finds it locked.
    pub fn acquire(dir: &Path, file_name: &str, who: &str) -> Result<DirLock, LockError> {
        let path = dir.join(file_name);
        let io_err = |action, source| LockError::Io {
            action,
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_err("open lock file", e))?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(LockError::Held {
                    holder: read_holder(&path),
                });
            }
            Err((_, errno)) => return Err(io_err("lock", errno.into())),
        };
        let line = format!("{who} pid={} host={}\n", std::process::id(), hostname());
        // Truncated first: a shorter line must not keep the tail of the
        // previous holder's.
        file.set_len(0)
            .and_then(|()| file.write_all_at(line.as_bytes(), 0))
            .map_err(|e| io_err("write lock file", e))?;
        Ok(DirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the holder wrote, for the message of the process that lost.
fn read_holder(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        // The holder may be between taking the lock and writing its line.
        Ok(_) => "another process (lock file is empty: it is still starting)".to_string(),
        Err(e) => format!("another process (read {}: {e})", path.display()),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder_line(who: &str) -> String {
        format!("{who} pid={} host={}", std::process::id(), hostname())
    }

    #[test]
    fn a_second_lock_fails_naming_the_holder_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(tmp.path(), "x.lock", "coordinator").unwrap();
        assert_eq!(first.path(), tmp.path().join("x.lock"));
        match DirLock::acquire(tmp.path(), "x.lock", "other") {
            Err(LockError::Held { holder }) => assert_eq!(holder, holder_line("coordinator")),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let second = DirLock::acquire(tmp.path(), "x.lock", "name=b").unwrap();
        assert!(tmp.path().join("x.lock").exists(), "the lock file stays");
        drop(second);
    }

    #[test]
    fn the_next_holder_replaces_a_longer_line_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let long = "name=a-very-long-daemon-name-indeed";
        drop(DirLock::acquire(tmp.path(), "l", long).unwrap());
        let _held = DirLock::acquire(tmp.path(), "l", "name=b").unwrap();
        let text = std::fs::read_to_string(tmp.path().join("l")).unwrap();
        assert_eq!(text, format!("{}\n", holder_line("name=b")));
    }

    #[test]
    fn locks_on_different_files_or_dirs_do_not_interfere() {
        let tmp = tempfile::tempdir().unwrap();
        let _a = DirLock::acquire(tmp.path(), "a.lock", "a").unwrap();
        let _b = DirLock::acquire(tmp.path(), "b.lock", "b").unwrap();
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let _c = DirLock::acquire(&other, "a.lock", "c").unwrap();
    }

    #[test]
    fn a_holder_that_has_not_written_yet_is_still_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("e.lock");
        // Someone holds the lock on an empty file (between lock and write).
        let f = File::create(&path).unwrap();
        let _held = Flock::lock(f, FlockArg::LockExclusiveNonblock).unwrap();
        match DirLock::acquire(tmp.path(), "e.lock", "me") {
            Err(LockError::Held { holder }) => {
                assert!(holder.contains("lock file is empty"), "{holder}")
            }
            other => panic!("expected Held, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_dir_is_an_error_naming_the_lock_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("absent");
        let err = DirLock::acquire(&dir, "x.lock", "me").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(
            msg.starts_with(&format!("open lock file {}", dir.join("x.lock").display())),
            "{msg}"
        );
        assert!(!dir.exists(), "nothing is created");
    }
}
