//! The terraform `-json` line parser on arbitrary lines: never a panic, and
//! every log line it makes is one text line (the UI never re-splits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use provisionerd::runner::logparse;

fuzz_target!(|data: &[u8]| {
    // The process module hands over one line at a time, without its '\n'.
    let text = String::from_utf8_lossy(data);
    let line = text.split('\n').next().unwrap_or_default();
    let parsed = logparse::json_line(line);
    for (_, text) in &parsed.lines {
        assert!(!text.contains('\n'), "a log line holds a newline: {text:?}");
    }
});
