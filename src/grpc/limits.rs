//! Every size limit in one place: what one gRPC message may carry, and how
//! large each field a client chooses may be. A field that is stored and
//! later listed must be bounded here, or a few oversized rows would push
//! every list answer over [`MAX_MESSAGE_BYTES`] for good. The README's
//! "Limits" table lists them for operators.

/// Largest gRPC message either side accepts (Coder's dRPC uses the same
/// 4 MiB). Anything that may be larger — template archives, terraform
/// states — travels in chunks (see [`crate::chunk`]), never in one message.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes per chunk of an archive or state: well under the message limit,
/// leaving room for the message's own fields.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Longest log line shipped in one `LogLine`: longer terraform output is
/// split into continuation lines, so a batch of lines always fits in a
/// message. The coordinator refuses a longer line (the daemon never sends
/// one).
pub const MAX_LOG_LINE_BYTES: usize = 64 * 1024;

/// Longest log stage name ("Planning Infrastructure").
pub const MAX_LOG_STAGE_BYTES: usize = 256;

/// Longest error message the coordinator answers with (it travels in a
/// header).
pub const MAX_STATUS_BYTES: usize = 4 * 1024;

/// Names of keys, daemons, templates, workspaces, owners and presets.
pub const MAX_NAME_BYTES: usize = 64;

/// Most tags on one key or one template push.
pub const MAX_TAGS: usize = 64;
/// Longest tag key.
pub const MAX_TAG_KEY_BYTES: usize = 64;
/// Longest tag value.
pub const MAX_TAG_VALUE_BYTES: usize = 256;

/// A daemon's `Hello`: its version string, and the job id it reports
/// (`Hello`/`StateUpdate` `current_job_id`).
pub const MAX_VERSION_BYTES: usize = 128;
pub const MAX_ID_BYTES: usize = 64;
/// A template version's message (`templates push --message`).
pub const MAX_VERSION_MESSAGE_BYTES: usize = 4 * 1024;

/// Template variables or parameter values in one request (push, create,
/// build): how many, how long one value may be, and all of them together.
pub const MAX_VALUES: usize = 256;
pub const MAX_VALUE_NAME_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_VALUES_BYTES: usize = 256 * 1024;

/// A job's error (FinishJob): a longer one is stored truncated, with a
/// marker saying how long it was — better cut than lost.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

/// Largest output value (its JSON) a Workspace message carries: outputs
/// are for people and scripts to read; the state keeps the whole value.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// All of a workspace's outputs together in one Workspace message.
pub const MAX_OUTPUTS_BYTES: usize = 256 * 1024;

/// Largest template metadata (variables, parameters, presets, README as
/// JSON) a push may have: GetTemplate returns it in one message. Also
/// bounds the variables an import's FinishJob reports.
pub const MAX_META_BYTES: usize = 1024 * 1024;

/// List calls answer in pages: rows per page when the caller names no
/// page size, the most rows a page holds, and the encoded bytes after
/// which a page ends early. Every row is bounded well under this by the
/// limits above, so a page always holds at least one row and fits in a
/// message with room to spare.
pub const DEFAULT_PAGE_ROWS: u32 = 100;
pub const MAX_PAGE_ROWS: u32 = 1000;
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

// A page ends before its rows pass MAX_PAGE_BYTES; the largest row (a
// template's variables, up to MAX_META_BYTES, plus bounded fields) is
// smaller still, so every page fits in one message with room to spare.
const _: () = assert!(MAX_META_BYTES + 64 * 1024 < MAX_PAGE_BYTES);
const _: () = assert!(2 * MAX_PAGE_BYTES <= MAX_MESSAGE_BYTES);

/// `text` cut to at most `max` bytes (at a character boundary) with a
/// marker saying how long it was; unchanged when it fits.
pub fn truncate(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let marker = format!(" … [truncated, {} bytes in all]", text.len());
    let mut cut = max.saturating_sub(marker.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_the_limit_and_says_how_long() {
        assert_eq!(truncate("short".into(), 10), "short");
        let long = "é".repeat(1000);
        let cut = truncate(long, 101);
        assert!(cut.len() <= 101, "{}", cut.len());
        assert!(cut.ends_with(" … [truncated, 2000 bytes in all]"), "{cut}");
        assert!(cut.starts_with("éé"));
    }
}
