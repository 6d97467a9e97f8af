//! A job's log lines on disk, for when the coordinator cannot take them as
//! fast as terraform prints them (an outage): `<cache>/spool/<job_id>.log`.
//!
//! Records are appended in seq order as a little-endian `u32` length and the
//! protobuf `LogLine` (which carries its seq), and read back in that order.
//! The file outlives a `kill -9` of the daemon, so a restarted daemon can
//! still deliver what it holds; a torn last record (the daemon died while
//! writing it) reads as the end of the file.
//!
//! The I/O is plain blocking file I/O: each append (one line, or the lines
//! of one burst) is one write to the page cache, done before the shipper
//! waits again (so a killed daemon leaves every line it took on disk), reads
//! go through a buffer; either costs less than a thread hop would.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::proto::LogLine;

/// Larger than any record we write (lines are capped at 64 KiB); a bigger
/// length prefix means the file is not ours or is damaged.
const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;
const BUFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum SpoolError {
    #[error("{action} log spool {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read log spool {}: damaged record at byte {offset}: {reason}", .path.display())]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_path_buf();
    move |source| SpoolError::Io {
        action,
        path,
        source,
    }
}

/// Where job `job_id`'s spool lives under `dir`.
pub(super) fn path(dir: &Path, job_id: &str) -> PathBuf {
    dir.join(format!("{job_id}.log"))
}

/// Removes job `job_id`'s spool; a spool that does not exist is fine.
pub(super) fn remove(dir: &Path, job_id: &str) -> Result<(), SpoolError> {
    let path = path(dir, job_id);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
        _ => Ok(()),
    }
}

/// An open spool: appended at the end, read from the front.
pub(super) struct Spool {
    writer: BufWriter<File>,
    reader: Reader,
    /// Bytes appended.
    written: u64,
    /// Records appended but not read back yet.
    unread: u64,
}

impl Spool {
    /// Creates (or empties) job `job_id`'s spool under `dir`.
    pub(super) fn create(dir: &Path, job_id: &str) -> Result<Spool, SpoolError> {
        Spool::create_at(dir, path(dir, job_id))
    }

    /// Creates (or empties) the spool file `path`, inside `dir`.
    fn create_at(dir: &Path, path: PathBuf) -> Result<Spool, SpoolError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create the directory of", dir))?;
        // Log lines may carry secrets terraform printed: owner only.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let reader = Reader::open(&path)?
            .ok_or_else(|| io_err("open", &path)(io::Error::from(io::ErrorKind::NotFound)))?;
        Ok(Spool {
            writer: BufWriter::with_capacity(BUFFER_BYTES, file),
            reader,
            written: 0,
            unread: 0,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.reader.path
    }

    pub(super) fn unread(&self) -> u64 {
        self.unread
    }

    pub(super) fn append(&mut self, line: &LogLine) -> Result<(), SpoolError> {
        self.append_all(std::slice::from_ref(line))
    }

    /// Appends `lines` with one write: a flood spills thousands of lines a
    /// second, and a write per line was most of the daemon's work then. On
    /// an error none of them counts as appended (a torn tail reads as the
    /// end of the file).
    pub(super) fn append_all(&mut self, lines: &[LogLine]) -> Result<(), SpoolError> {
        let mut buf = Vec::with_capacity(lines.iter().map(|l| 4 + l.encoded_len()).sum());
        for line in lines {
            let len = line.encoded_len();
            let len = u32::try_from(len)
                .ok()
                .filter(|&n| n as usize <= MAX_RECORD_BYTES)
                .ok_or_else(|| {
                    io_err("append to", &self.reader.path)(io::Error::other(format!(
                        "log line {} is {len} bytes, over the {MAX_RECORD_BYTES} byte record limit",
                        line.seq
                    )))
                })?;
            buf.extend_from_slice(&len.to_le_bytes());
            line.encode(&mut buf)
                .map_err(|e| io_err("append to", &self.reader.path)(io::Error::other(e)))?;
        }
        // Buffered so that the records go out in one write.
        self.writer
            .write_all(&buf)
            .and_then(|()| self.writer.flush())
            .map_err(io_err("append to", &self.reader.path))?;
        self.written += buf.len() as u64;
        self.unread += lines.len() as u64;
        Ok(())
    }

    /// The oldest record not read back yet.
    pub(super) fn next(&mut self) -> Result<Option<LogLine>, SpoolError> {
        if self.unread == 0 {
            return Ok(None);
        }
        let line = self.reader.next()?.ok_or_else(|| SpoolError::Damaged {
            path: self.reader.path.clone(),
            offset: self.reader.offset,
            reason: format!("{} records are missing", self.unread),
        })?;
        self.unread -= 1;
        Ok(Some(line))
    }

    /// Counts every record appended so far as read: they are also held in
    /// memory, and are on disk only for a restarted daemon's sake.
    pub(super) fn skip_unread(&mut self) -> Result<(), SpoolError> {
        self.reader
            .file
            .seek(SeekFrom::Start(self.written))
            .map_err(io_err("seek in", &self.reader.path))?;
        self.reader.offset = self.written;
        self.unread = 0;
        Ok(())
    }

    /// Deletes the file (once its lines are confirmed or given up).
    pub(super) fn remove(self) -> Result<(), SpoolError> {
        let path = self.reader.path.clone();
        drop(self);
        fs::remove_file(&path).map_err(io_err("remove", &path))
    }
}

/// A new spool for a job, written beside the old one (`.<job_id>.log.tmp`)
/// and renamed over it once complete, so a kill mid-write leaves the old
/// one whole.
pub(super) struct Replacement {
    spool: Spool,
    target: PathBuf,
}

impl Replacement {
    pub(super) fn create(dir: &Path, job_id: &str) -> Result<Replacement, SpoolError> {
        let spool = Spool::create_at(dir, dir.join(format!(".{job_id}.log.tmp")))?;
        Ok(Replacement {
            spool,
            target: path(dir, job_id),
        })
    }

    pub(super) fn append(&mut self, line: &LogLine) -> Result<(), SpoolError> {
        self.spool.append(line)
    }

    pub(super) fn append_all(&mut self, lines: &[LogLine]) -> Result<(), SpoolError> {
        self.spool.append_all(lines)
    }

    /// Puts the new spool in place of the old one; returns its path.
    pub(super) fn commit(self) -> Result<PathBuf, SpoolError> {
        let Replacement { spool, target } = self;
        let tmp = spool.path().to_path_buf();
        drop(spool);
        fs::rename(&tmp, &target).map_err(io_err("replace", &target))?;
        Ok(target)
    }
}

/// Reads a spool from the front; also what a restarted daemon uses on the
/// spool a killed one left.
pub(super) struct Reader {
    path: PathBuf,
    file: BufReader<File>,
    offset: u64,
}

impl Reader {
    /// `None` if there is no such file.
    pub(super) fn open(path: &Path) -> Result<Option<Reader>, SpoolError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        Ok(Some(Reader {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(BUFFER_BYTES, file),
            offset: 0,
        }))
    }

    /// The next record; `None` at the end of the file or at a torn last
    /// record.
    pub(super) fn next(&mut self) -> Result<Option<LogLine>, SpoolError> {
        let mut len = [0u8; 4];
        if !self.read_whole(&mut len)? {
            return Ok(None);
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(self.damaged(format!("record length {len} is over the limit")));
        }
        let mut body = vec![0u8; len];
        if !self.read_whole(&mut body)? {
            return Ok(None);
        }
        let line = LogLine::decode(body.as_slice()).map_err(|e| self.damaged(e.to_string()))?;
        self.offset += 4 + len as u64;
        Ok(Some(line))
    }

    /// Fills `buf`; `false` if the file ends first.
    fn read_whole(&mut self, buf: &mut [u8]) -> Result<bool, SpoolError> {
        match self.file.read_exact(buf) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(io_err("read", &self.path)(e)),
        }
    }

    fn damaged(&self, reason: String) -> SpoolError {
        SpoolError::Damaged {
            path: self.path.clone(),
            offset: self.offset,
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
