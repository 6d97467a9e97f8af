//! Template archives: tar a template directory deterministically
//! ([`tar_dir`], for the CLI), validate one without writing anything
//! ([`check`], for the coordinator at push) and extract one into a work dir
//! ([`extract`], for the daemon). `check` and `extract` run the same entry
//! checks (`walk`); only what happens to an accepted entry differs.
//!
//! Archives come from whoever pushed the template, so they are hostile
//! until proven otherwise. Accepted: regular files, directories, and
//! symlinks whose relative target resolves inside the destination (through
//! any other symlinks of the archive). Refused, naming the entry: absolute
//! paths, `..` components, names with NUL or invalid UTF-8, hard links
//! (a template never needs one, and refusing them all is simpler to trust
//! than checking each), devices, fifos, sparse files, duplicates, entries
//! inside a file or a symlink, and anything over a [`Limits`] bound —
//! checked from the header, before the entry's data is written.

mod extract;
mod limits;
mod tar_dir;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use extract::extract;
pub use limits::{GIB, KIB, Limits, MIB, Size, parse_size};
pub use tar_dir::tar_dir;

/// What an archive holds (what [`extract`] wrote, or would write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// File data, in bytes.
    pub bytes: u64,
}

/// Validates `archive` against `limits` exactly as [`extract`] would,
/// writing nothing.
pub fn check(archive: &[u8], limits: &Limits) -> Result<Stats, ArchiveError> {
    walk::walk(archive, limits, Action::Check, &mut walk::NoWrite)
}

/// Which operation refused an archive (the first word of the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Check,
    Extract,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Check => "check",
            Action::Extract => "extract",
        })
    }
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
    /// `entry` is the name as the archive spells it, printed lossily with
    /// control characters escaped.
    #[error("{action} template archive: entry {entry} {problem}")]
    Entry {
        action: Action,
        entry: String,
        problem: EntryProblem,
    },
    #[error(
        "{action} template archive: the archive is {size} bytes, over the \
         --max-archive-bytes limit of {max}"
    )]
    ArchiveTooLarge {
        action: Action,
        size: u64,
        max: Size,
    },
    #[error("{action} template archive: read archive: {source}")]
    Corrupt {
        action: Action,
        #[source]
        source: io::Error,
    },
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
    #[error("has a NUL byte in its name")]
    NulInName,
    #[error("has a name that is not valid UTF-8")]
    NotUtf8,
    #[error("has {what} of {len} bytes, over the {max}-byte limit")]
    NameTooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("is {depth} levels deep, over the --max-path-depth limit of {max}")]
    TooDeep { depth: u64, max: u64 },
    #[error("is entry number {count}, over the --max-entries limit of {max}")]
    TooManyEntries { count: u64, max: u64 },
    #[error("is {size} bytes, over the --max-file-bytes limit of {max}")]
    FileTooLarge { size: u64, max: Size },
    #[error("brings the file data to {total} bytes, over the --max-total-bytes limit of {max}")]
    TotalTooLarge { total: u64, max: Size },
    #[error("is a hard link; hard links are not allowed in a template")]
    HardLink,
    #[error("is a {0}; only regular files, directories and symlinks are allowed")]
    Special(&'static str),
    #[error("is a symlink to {target}, which {why}")]
    LinkTarget { target: String, why: LinkProblem },
    #[error("appears more than once")]
    Duplicate,
    #[error("is inside {parent}, which is not a directory")]
    UnderNonDir { parent: String },
    #[error("is inside {parent}, which is a symlink; nothing is written through a symlink")]
    ThroughSymlink { parent: String },
    #[error("conflicts with an existing file, directory or symlink")]
    Conflict,
    #[error("is truncated ({copied} of {size} bytes)")]
    Truncated { copied: u64, size: u64 },
}

/// Why a symlink's target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkProblem {
    #[error("is empty")]
    Empty,
    #[error("has a NUL byte")]
    Nul,
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("is an absolute path")]
    Absolute,
    #[error("is over {} bytes", walk::MAX_PATH_BYTES)]
    TooLong,
    #[error("resolves outside the work dir")]
    Escapes,
    #[error("goes through more than {} symlinks (a loop?)", walk::MAX_LINK_HOPS)]
    Loop,
}
