//! Turns terraform output lines into log lines. With `-json`, terraform
//! prints one machine-readable UI message per stdout line; diagnostics are
//! rendered the way terraform's human output shows them (summary, location,
//! detail), one log line per text line so the UI never has to re-split.

use std::borrow::Cow;

use serde::Deserialize;

use super::Level;
use crate::process::Stream;

/// The log lines one output line becomes, and the summary of an error it
/// reported (kept to explain a non-zero exit).
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub lines: Vec<(Level, String)>,
    pub error: Option<String>,
}

/// Borrowed from the line where it can be (no escapes): every output line
/// of a job is parsed here.
#[derive(Deserialize)]
struct UiMessage<'a> {
    #[serde(rename = "@level", borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(rename = "@message", borrow)]
    message: Option<Cow<'a, str>>,
    diagnostic: Option<Diagnostic>,
}

#[derive(Deserialize)]
struct Diagnostic {
    #[serde(default)]
    severity: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    detail: String,
    range: Option<Range>,
}

#[derive(Deserialize)]
struct Range {
    filename: String,
    start: Position,
}

#[derive(Deserialize)]
struct Position {
    line: u64,
}

/// A stdout line of a `-json` command. Anything that is not a UI message
/// (a provider printing raw text, a panic) is kept as-is at Info.
pub fn json_line(line: &str) -> Parsed {
    let Ok(msg) = serde_json::from_str::<UiMessage>(line) else {
        return plain_line(Stream::Stdout, line);
    };
    if let Some(diag) = msg.diagnostic {
        return diagnostic(diag);
    }
    let Some(message) = msg.message else {
        return plain_line(Stream::Stdout, line);
    };
    let level = level(msg.level.as_deref().unwrap_or("info"));
    Parsed {
        lines: text_lines(&message).map(|l| (level, l)).collect(),
        error: None,
    }
}

/// A line of a command without `-json` (or any stderr line): stdout is Info,
/// stderr Error. `Error: ...` lines are remembered as the error summary.
pub(super) fn plain_line(stream: Stream, line: &str) -> Parsed {
    let line = line.trim_end();
    if line.trim().is_empty() {
        return Parsed::default();
    }
    let level = match stream {
        Stream::Stdout => Level::Info,
        Stream::Stderr => Level::Error,
    };
    Parsed {
        lines: vec![(level, line.to_string())],
        error: line.starts_with("Error: ").then(|| line.to_string()),
    }
}

fn diagnostic(diag: Diagnostic) -> Parsed {
    let (level, prefix) = match diag.severity.as_str() {
        "error" => (Level::Error, "Error"),
        "warning" => (Level::Warn, "Warning"),
        other => (level(other), "Diagnostic"),
    };
    let mut summary = text_lines(&diag.summary);
    let first = summary.next().unwrap_or_default();
    let heading = format!("{prefix}: {first}");
    let mut lines = vec![(level, heading.clone())];
    lines.extend(summary.map(|l| (level, l)));
    if let Some(range) = diag.range {
        // A file name is one line of text like every other log line (a
        // name holding a newline would split the UI's line).
        let file: String = range
            .filename
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        lines.push((level, format!("on {file} line {}", range.start.line)));
    }
    lines.extend(text_lines(&diag.detail).map(|l| (level, l)));
    Parsed {
        lines,
        error: (level == Level::Error).then_some(heading),
    }
}

/// Non-blank lines of `text`, without trailing whitespace.
fn text_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
}

/// terraform's `@level`; unknown levels are shown, at Info.
pub(super) fn level(name: &str) -> Level {
    match name {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" => Level::Info,
        "warn" | "warning" => Level::Warn,
        "error" => Level::Error,
        _ => Level::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(parsed: &Parsed) -> Vec<(Level, &str)> {
        parsed.lines.iter().map(|(l, t)| (*l, t.as_str())).collect()
    }

    #[test]
    fn a_file_name_with_a_newline_stays_one_line() {
        // Found by the logparse fuzz target.
        let parsed = json_line(
            r#"{"@level":"error","@message":"Error: x","diagnostic":{"severity":"error","summary":"x","detail":"","range":{"filename":"main.tf\nSecond","start":{"line":3,"column":3}}}}"#,
        );
        assert!(parsed.lines.iter().all(|(_, l)| !l.contains('\n')));
        assert!(
            parsed
                .lines
                .iter()
                .any(|(_, l)| l == "on main.tf Second line 3"),
            "{:?}",
            parsed.lines
        );
    }

    #[test]
    fn ui_messages_keep_their_level() {
        let p = json_line(r#"{"@level":"warn","@message":"two\n\nlines","type":"log"}"#);
        assert_eq!(
            lines(&p),
            vec![(Level::Warn, "two"), (Level::Warn, "lines")]
        );
        let p = json_line(r#"{"@level":"bogus","@message":"x"}"#);
        assert_eq!(lines(&p), vec![(Level::Info, "x")]);
        assert_eq!(
            json_line(r#"{"@level":"info","@message":"  "}"#),
            Parsed::default()
        );
    }

    #[test]
    fn diagnostics_render_summary_location_and_detail() {
        let p = json_line(
            r#"{"@level":"error","@message":"Error: Invalid reference","type":"diagnostic",
            "diagnostic":{"severity":"error","summary":"Invalid reference","detail":"A reference.\n\nSecond.",
            "range":{"filename":"main.tf","start":{"line":3,"column":1}}}}"#
                .replace('\n', " ")
                .as_str(),
        );
        assert_eq!(
            lines(&p),
            vec![
                (Level::Error, "Error: Invalid reference"),
                (Level::Error, "on main.tf line 3"),
                (Level::Error, "A reference."),
                (Level::Error, "Second."),
            ]
        );
        assert_eq!(p.error.as_deref(), Some("Error: Invalid reference"));
        let p =
            json_line(r#"{"@level":"warn","diagnostic":{"severity":"warning","summary":"Old"}}"#);
        assert_eq!(
            (lines(&p), p.error.as_deref()),
            (vec![(Level::Warn, "Warning: Old")], None)
        );
    }

    #[test]
    fn non_json_lines_are_kept() {
        let p = json_line("panic: runtime error");
        assert_eq!(lines(&p), vec![(Level::Info, "panic: runtime error")]);
        let p = plain_line(Stream::Stderr, "Error: Unsupported argument  ");
        assert_eq!(
            lines(&p),
            vec![(Level::Error, "Error: Unsupported argument")]
        );
        assert_eq!(p.error.as_deref(), Some("Error: Unsupported argument"));
        assert_eq!(plain_line(Stream::Stdout, ""), Parsed::default());
    }
}
