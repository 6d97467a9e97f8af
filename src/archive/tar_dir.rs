//! `tar_dir`: a template directory as a deterministic tar (for the CLI).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tar::{EntryType, Header};

use super::ArchiveError;

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
pub(super) fn file_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}
