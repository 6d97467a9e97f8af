//! A template's files: which ones are read, their HCL syntax tree, and
//! `file:line` positions for messages.

use std::fs;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use hcl::edit::structure::Body;

use super::TemplateError;

/// One `.tf` file: its name (for messages) and text (for positions and the
/// source text of expressions). A `.tf.json` file's text is the HCL
/// written from it, `lines` mapping each of its lines to the JSON's.
pub(super) struct SourceFile {
    pub name: String,
    pub text: String,
    pub lines: Option<Vec<usize>>,
    /// Where each line of `text` starts, found once: a file with 10 000
    /// locals asks for 10 000 positions.
    starts: OnceLock<Vec<usize>>,
}

pub(super) struct Files {
    pub tf: Vec<SourceFile>,
    pub readme: Option<String>,
}

/// Terraform reads only the root module's `*.tf` and `*.tf.json` files, so subdirectories
/// (modules, scripts) are not looked at. Files are sorted so that
/// declaration order, and so messages, do not depend on the file system.
pub(super) fn read_dir(dir: &Path) -> Result<Files, TemplateError> {
    let list = |source| TemplateError::List {
        dir: dir.to_path_buf(),
        source,
    };
    let mut tf = Vec::new();
    let mut readme = None;
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(list)? {
        let path = entry.map_err(list)?.path();
        // Followed like terraform follows it: an archive's symlinks are
        // checked to stay inside the template. A dangling one is skipped
        // here; terraform names it when it runs.
        if fs::metadata(&path).is_ok_and(|meta| meta.is_file()) {
            entries.push(path);
        }
    }
    entries.sort();
    // Each file is read once, however many links point at it: 10 000 links
    // to one 10 MiB file must not make the coordinator read 100 GB (the
    // archive's limits bound only the distinct files). Terraform refuses
    // the duplicate declarations itself when the import runs.
    let mut seen = std::collections::HashSet::new();
    for path in entries {
        if !seen.insert(fs::canonicalize(&path).unwrap_or_else(|_| path.clone())) {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned();
        let read = |source| TemplateError::Read {
            file: name.clone(),
            source,
        };
        if name == "README.md" {
            // A README is documentation: a stray invalid byte should not
            // refuse the template.
            let bytes = fs::read(&path).map_err(read)?;
            readme = Some(String::from_utf8_lossy(&bytes).into_owned());
        } else if path.extension().is_some_and(|ext| ext == "tf") {
            let text = fs::read_to_string(&path).map_err(read)?;
            tf.push(SourceFile {
                name,
                text,
                lines: None,
                starts: OnceLock::new(),
            });
        } else if name.ends_with(".tf.json") {
            let text = fs::read_to_string(&path).map_err(read)?;
            tf.push(SourceFile::from_json(name, &text)?);
        }
    }
    Ok(Files { tf, readme })
}

impl SourceFile {
    /// A `.tf.json` file, read as the HCL of the blocks it declares.
    pub fn from_json(name: String, text: &str) -> Result<SourceFile, TemplateError> {
        let root = super::json::parse(text).map_err(|err| TemplateError::Syntax {
            at: format!("{name}:{}:{}", err.line, err.column),
            message: err.message,
        })?;
        let converted =
            super::tfjson::convert(&root).map_err(|(line, message)| TemplateError::Syntax {
                at: format!("{name}:{line}"),
                message,
            })?;
        Ok(SourceFile {
            name,
            text: converted.text,
            lines: Some(converted.lines),
            starts: OnceLock::new(),
        })
    }

    /// `file:line` of a byte span; just the file when the span is unknown.
    pub fn at(&self, span: Option<Range<usize>>) -> String {
        match span {
            Some(span) => self.at_line(self.line_of(span.start)),
            None => self.name.clone(),
        }
    }

    /// `file:line` of a line of `text`, in the file as written.
    fn at_line(&self, line: usize) -> String {
        let line = match &self.lines {
            None => Some(line),
            Some(lines) => lines.get(line.saturating_sub(1)).copied(),
        };
        match line {
            Some(line) => format!("{}:{line}", self.name),
            None => self.name.clone(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        let starts = self.starts.get_or_init(|| {
            let newlines = self.text.bytes().enumerate().filter(|(_, b)| *b == b'\n');
            std::iter::once(0)
                .chain(newlines.map(|(i, _)| i + 1))
                .collect()
        });
        // The number of lines starting at or before `offset`.
        starts.partition_point(|&start| start <= offset)
    }

    /// The source text of a span, as written.
    pub fn slice(&self, span: Option<Range<usize>>) -> Option<&str> {
        span.and_then(|span| self.text.get(span)).map(str::trim)
    }

    /// The syntax tree, which keeps the byte spans that hcl-rs's own
    /// `Body` drops.
    pub fn parse(&self) -> Result<Body, TemplateError> {
        hcl::edit::parser::parse_body(&self.text).map_err(|err| TemplateError::Syntax {
            at: self.at_line(err.location().line()),
            message: err.message().to_string(),
        })
    }
}
