//! The one error type of template parsing, tag evaluation and parameter
//! resolution. Every message starts with the action; `at` is `file:line`
//! (just the file when the parser gives no position).

use std::io;
use std::path::PathBuf;

use crate::archive::ArchiveError;
use crate::tags::TagError;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("parse template: list {}: {source}", .dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse template: read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("parse template: create a temporary directory for the archive: {0}")]
    TempDir(#[source] io::Error),
    #[error("parse template: {0}")]
    Extract(#[source] ArchiveError),
    /// The HCL itself is malformed.
    #[error("parse template: {at}: {message}")]
    Syntax { at: String, message: String },
    /// A block is well-formed HCL but not what Coder accepts. `subject`
    /// names the block (`coder_parameter "region"`).
    #[error("parse template: {at}: {subject}: {problem}")]
    Invalid {
        at: String,
        subject: String,
        problem: String,
    },
    #[error("evaluate workspace tags: {at}: tag {key:?}: {problem}")]
    Tag {
        at: String,
        key: String,
        problem: String,
    },
    #[error("evaluate workspace tags: {0}")]
    Tags(#[source] TagError),
    #[error("resolve parameters: the template has no preset {name:?} (it has: {known})")]
    UnknownPreset { name: String, known: String },
    #[error("resolve parameters: the template declares no parameter {}", quoted(.names))]
    UnknownParameters { names: Vec<String> },
    #[error(
        "resolve parameters: preset {preset:?} sets {}; a preset's parameters cannot be given a different value",
        quoted(.names)
    )]
    SetByPreset { preset: String, names: Vec<String> },
    #[error("resolve parameters: {at}: parameter {name:?}: {problem}")]
    Value {
        at: String,
        name: String,
        problem: String,
    },
    #[error("resolve parameters: required parameters without a value: {}", quoted(.names))]
    Missing { names: Vec<String> },
}

/// `"a", "b"` for lists of names in messages.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
