//! The entry checks [`super::check`] and [`super::extract`] share: one walk
//! over the archive that refuses a bad entry before anything of it reaches
//! the [`Sink`], and keeps the tree built so far to judge later entries
//! (duplicates, entries under a file or symlink, where symlinks lead).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::tar_dir::file_mode;
use super::{Action, ArchiveError, EntryProblem, Limits, LinkProblem, Size, Stats};

/// Symlinks followed while resolving one target; Linux gives up at 40 too.
pub const MAX_LINK_HOPS: u32 = 40;
/// Longest file name (one component), as on Linux file systems: longer
/// names could pass `check` and then fail in `extract`.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest entry path; the work dir's own path must still fit in PATH_MAX.
pub const MAX_PATH_BYTES: usize = 1024;

/// Where accepted entries go. `rel` is a plain relative path (only normal
/// components); parents are always announced with `dir` first.
pub(super) trait Sink {
    fn dir(&mut self, rel: &Path, entry: &str) -> Result<(), ArchiveError>;
    /// Consumes `data` (exactly `size` bytes unless the archive is short)
    /// and returns how many bytes it got.
    fn file(
        &mut self,
        rel: &Path,
        entry: &str,
        mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<u64, ArchiveError>;
    fn symlink(&mut self, rel: &Path, entry: &str, target: &Path) -> Result<(), ArchiveError>;
}

/// The sink of [`super::check`]: reads file data (so a short archive is
/// still caught) and writes nothing.
pub(super) struct NoWrite;

impl Sink for NoWrite {
    fn dir(&mut self, _: &Path, _: &str) -> Result<(), ArchiveError> {
        Ok(())
    }

    fn file(
        &mut self,
        _: &Path,
        _: &str,
        _: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<u64, ArchiveError> {
        io::copy(&mut data.take(size), &mut io::sink()).map_err(|source| ArchiveError::Corrupt {
            action: Action::Check,
            source,
        })
    }

    fn symlink(&mut self, _: &Path, _: &str, _: &Path) -> Result<(), ArchiveError> {
        Ok(())
    }
}

/// What the walk has accepted at a path.
enum Node {
    /// `explicit`: an entry of its own, not only a parent of one.
    Dir {
        explicit: bool,
    },
    File,
    Symlink {
        entry: String,
        target: PathBuf,
    },
}

struct Walk<'a> {
    limits: &'a Limits,
    action: Action,
    tree: BTreeMap<PathBuf, Node>,
    stats: Stats,
}

pub(super) fn walk(
    archive: &[u8],
    limits: &Limits,
    action: Action,
    sink: &mut dyn Sink,
) -> Result<Stats, ArchiveError> {
    let size = archive.len() as u64;
    if size > limits.max_archive_bytes {
        return Err(ArchiveError::ArchiveTooLarge {
            action,
            size,
            max: Size(limits.max_archive_bytes),
        });
    }
    let corrupt = |source| ArchiveError::Corrupt { action, source };
    let mut walk = Walk {
        limits,
        action,
        tree: BTreeMap::new(),
        stats: Stats::default(),
    };
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().map_err(corrupt)? {
        walk.entry(&mut entry.map_err(corrupt)?, sink)?;
    }
    walk.recheck_symlinks()?;
    Ok(walk.stats)
}

impl Walk<'_> {
    fn refuse(&self, entry: &str, problem: EntryProblem) -> ArchiveError {
        ArchiveError::Entry {
            action: self.action,
            entry: entry.to_string(),
            problem,
        }
    }

    fn entry(
        &mut self,
        entry: &mut tar::Entry<'_, &[u8]>,
        sink: &mut dyn Sink,
    ) -> Result<(), ArchiveError> {
        let raw = entry.path_bytes().into_owned();
        let name = display_name(&raw);
        let kind = entry.header().entry_type();
        self.stats.entries += 1;
        let count = self.stats.entries;
        if count > self.limits.max_entries {
            let max = self.limits.max_entries;
            return Err(self.refuse(&name, EntryProblem::TooManyEntries { count, max }));
        }
        if kind == EntryType::XGlobalHeader {
            return Ok(()); // pax metadata for the whole archive; nothing to write
        }
        let rel = self.entry_path(&raw, &name)?;
        if rel.as_os_str().is_empty() {
            if kind == EntryType::Directory {
                return Ok(()); // "./": the destination itself
            }
            return Err(self.refuse(&name, EntryProblem::EmptyPath));
        }
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink => {}
            EntryType::Link => return Err(self.refuse(&name, EntryProblem::HardLink)),
            other => return Err(self.refuse(&name, EntryProblem::Special(special_name(other)))),
        }
        self.parents(&rel, &name, sink)?;
        match self.tree.get(&rel) {
            None => {}
            Some(Node::Dir { explicit: false }) if kind == EntryType::Directory => {}
            Some(Node::Dir { explicit: false }) => {
                return Err(self.refuse(&name, EntryProblem::Conflict));
            }
            Some(_) => return Err(self.refuse(&name, EntryProblem::Duplicate)),
        }
        match kind {
            EntryType::Directory => {
                if !self.tree.contains_key(&rel) {
                    sink.dir(&rel, &name)?;
                    self.stats.dirs += 1;
                }
                self.tree.insert(rel, Node::Dir { explicit: true });
            }
            EntryType::Symlink => {
                let target = self.link_target(entry, &rel, &name)?;
                sink.symlink(&rel, &name, &target)?;
                self.stats.symlinks += 1;
                self.tree.insert(
                    rel,
                    Node::Symlink {
                        entry: name,
                        target,
                    },
                );
            }
            _ => self.file(entry, rel, &name, sink)?,
        }
        Ok(())
    }

    /// The entry's name as a plain relative path, or why it is refused.
    fn entry_path(&self, raw: &[u8], name: &str) -> Result<PathBuf, ArchiveError> {
        if raw.contains(&0) {
            return Err(self.refuse(name, EntryProblem::NulInName));
        }
        let text =
            std::str::from_utf8(raw).map_err(|_| self.refuse(name, EntryProblem::NotUtf8))?;
        let too_long = |what, len, max| EntryProblem::NameTooLong { what, len, max };
        if text.len() > MAX_PATH_BYTES {
            return Err(self.refuse(name, too_long("a path", text.len(), MAX_PATH_BYTES)));
        }
        let mut rel = PathBuf::new();
        for component in Path::new(text).components() {
            match component {
                Component::Normal(part) if part.len() > MAX_NAME_BYTES => {
                    let problem = too_long("a name", part.len(), MAX_NAME_BYTES);
                    return Err(self.refuse(name, problem));
                }
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                // Even `a/../b`: a template never needs it, and a `..` that
                // stays inside on paper can leave through a symlink.
                Component::ParentDir => return Err(self.refuse(name, EntryProblem::EscapesWorkDir)),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(name, EntryProblem::Absolute));
                }
            }
        }
        let depth = rel.components().count() as u64;
        if depth > self.limits.max_path_depth {
            let max = self.limits.max_path_depth;
            return Err(self.refuse(name, EntryProblem::TooDeep { depth, max }));
        }
        Ok(rel)
    }

    /// Announces the parents of `rel` not seen yet; refuses when one is a
    /// file or a symlink (writing below a symlink would follow it).
    fn parents(&mut self, rel: &Path, name: &str, sink: &mut dyn Sink) -> Result<(), ArchiveError> {
        let mut parent = PathBuf::new();
        let mut components = rel.components().peekable();
        while let Some(part) = components.next() {
            if components.peek().is_none() {
                break; // `rel` itself
            }
            parent.push(part);
            let shown = || parent.to_string_lossy().into_owned();
            match self.tree.get(&parent) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File) => {
                    return Err(self.refuse(name, EntryProblem::UnderNonDir { parent: shown() }));
                }
                Some(Node::Symlink { .. }) => {
                    return Err(self.refuse(name, EntryProblem::ThroughSymlink { parent: shown() }));
                }
                None => {
                    sink.dir(&parent, name)?;
                    self.stats.dirs += 1;
                    self.tree
                        .insert(parent.clone(), Node::Dir { explicit: false });
                }
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        entry: &mut tar::Entry<'_, &[u8]>,
        rel: PathBuf,
        name: &str,
        sink: &mut dyn Sink,
    ) -> Result<(), ArchiveError> {
        // Both bounds are judged on the header's size, before any data is
        // read: a declared terabyte is refused without reading a byte.
        let size = entry.size();
        if size > self.limits.max_file_bytes {
            let max = Size(self.limits.max_file_bytes);
            return Err(self.refuse(name, EntryProblem::FileTooLarge { size, max }));
        }
        let total = self.stats.bytes.saturating_add(size);
        if total > self.limits.max_total_bytes {
            let max = Size(self.limits.max_total_bytes);
            return Err(self.refuse(name, EntryProblem::TotalTooLarge { total, max }));
        }
        let mode = entry
            .header()
            .mode()
            .map_err(|source| ArchiveError::Corrupt {
                action: self.action,
                source,
            })?;
        let copied = sink.file(&rel, name, file_mode(mode), size, entry)?;
        if copied != size {
            return Err(self.refuse(name, EntryProblem::Truncated { copied, size }));
        }
        self.stats.files += 1;
        self.stats.bytes = total;
        self.tree.insert(rel, Node::File);
        Ok(())
    }

    fn link_target(
        &self,
        entry: &tar::Entry<'_, &[u8]>,
        rel: &Path,
        name: &str,
    ) -> Result<PathBuf, ArchiveError> {
        let raw = entry
            .link_name_bytes()
            .map(|b| b.into_owned())
            .unwrap_or_default();
        let bad = |why| {
            let target = display_name(&raw);
            self.refuse(name, EntryProblem::LinkTarget { target, why })
        };
        if raw.is_empty() {
            return Err(bad(LinkProblem::Empty));
        }
        if raw.contains(&0) {
            return Err(bad(LinkProblem::Nul));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(bad(LinkProblem::TooLong));
        }
        let text = std::str::from_utf8(&raw).map_err(|_| bad(LinkProblem::NotUtf8))?;
        let target = PathBuf::from(text);
        resolve_link(&self.tree, rel, &target).map_err(bad)?;
        Ok(target)
    }

    /// A symlink accepted early may lead outside once a later entry turns
    /// one of the components it goes through into a symlink (`d2 -> d1/..`,
    /// then `d1 -> .`), so every link is resolved again in the final tree.
    fn recheck_symlinks(&self) -> Result<(), ArchiveError> {
        for (rel, node) in &self.tree {
            if let Node::Symlink { entry, target } = node {
                resolve_link(&self.tree, rel, target).map_err(|why| {
                    let target = target.to_string_lossy().into_owned();
                    self.refuse(entry, EntryProblem::LinkTarget { target, why })
                })?;
            }
        }
        Ok(())
    }
}

/// Where the symlink at `link` pointing to `target` leads, following the
/// archive's own symlinks, as components below the destination; an error
/// if it leaves it at any step. Components the archive does not hold are
/// taken as plain directories: on disk they do not exist, so nothing
/// through them resolves at all.
fn resolve_link(
    tree: &BTreeMap<PathBuf, Node>,
    link: &Path,
    target: &Path,
) -> Result<Vec<OsString>, LinkProblem> {
    let mut at: Vec<OsString> = link
        .parent()
        .map(|p| p.iter().map(|c| c.to_os_string()).collect())
        .unwrap_or_default();
    let mut hops = 0;
    follow(tree, &mut at, target, &mut hops)?;
    Ok(at)
}

fn follow(
    tree: &BTreeMap<PathBuf, Node>,
    at: &mut Vec<OsString>,
    target: &Path,
    hops: &mut u32,
) -> Result<(), LinkProblem> {
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return Err(LinkProblem::Absolute),
            Component::CurDir => {}
            Component::ParentDir => {
                at.pop().ok_or(LinkProblem::Escapes)?;
            }
            Component::Normal(part) => {
                at.push(part.to_os_string());
                let here: PathBuf = at.iter().collect();
                if let Some(Node::Symlink { target, .. }) = tree.get(&here) {
                    *hops += 1;
                    if *hops > MAX_LINK_HOPS {
                        return Err(LinkProblem::Loop);
                    }
                    at.pop();
                    follow(tree, at, target, hops)?;
                }
            }
        }
    }
    Ok(())
}

/// An entry name fit for a message: lossy UTF-8, control characters
/// (NUL, newlines, escapes) shown escaped so a name cannot forge log lines.
pub(super) fn display_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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
