//! Bounds on what clients send, checked at the edge before anything is
//! stored: a field that is stored and later listed must never grow a list
//! answer past the message limit. The limits are named in
//! [`crate::grpc::limits`]; each refusal names the field and its limit.

use std::collections::HashMap;

use prost::Message;

use super::error::{CoordError, Result};
use crate::grpc::limits::{
    MAX_ERROR_BYTES, MAX_ID_BYTES, MAX_LOG_LINE_BYTES, MAX_LOG_STAGE_BYTES, MAX_META_BYTES,
    MAX_VALUE_BYTES, MAX_VALUE_NAME_BYTES, MAX_VALUES, MAX_VALUES_BYTES, MAX_VERSION_BYTES,
    truncate,
};
use crate::proto;
use crate::tags::{self, Tags};

/// A tag set: at most [`crate::grpc::limits::MAX_TAGS`] tags, each key
/// and value within its limit.
pub fn tags(action: &str, map: &HashMap<String, String>) -> Result<Tags> {
    let tags: Tags = map.clone().into_iter().collect();
    tags::validate(&tags).map_err(|e| CoordError::Invalid(format!("{action}: {e}")))?;
    Ok(tags)
}

/// A text field: at most `max` bytes.
pub fn text(action: &str, field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        return Err(CoordError::Invalid(format!(
            "{action}: {field} is {} bytes, over the limit of {max} bytes",
            value.len()
        )));
    }
    Ok(())
}

/// Variables or parameter values (`field`: "variables", "parameters"):
/// how many, each name and value, and all of them together.
pub fn values(action: &str, field: &str, map: &HashMap<String, String>) -> Result<()> {
    if map.len() > MAX_VALUES {
        return Err(CoordError::Invalid(format!(
            "{action}: {} {field}, over the limit of {MAX_VALUES}",
            map.len()
        )));
    }
    let mut total = 0;
    for (name, value) in map {
        let shown = tags::shown(name);
        text(
            action,
            &format!("{field} name {shown:?}"),
            name,
            MAX_VALUE_NAME_BYTES,
        )?;
        text(
            action,
            &format!("{field} {shown:?}"),
            value,
            MAX_VALUE_BYTES,
        )?;
        total += name.len() + value.len();
    }
    if total > MAX_VALUES_BYTES {
        return Err(CoordError::Invalid(format!(
            "{action}: {field} are {total} bytes together, over the limit of {MAX_VALUES_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A daemon's Hello: its version and current job as it reports them are
/// stored and listed (its name is checked as a name).
pub fn hello(h: &proto::Hello) -> Result<()> {
    let action = format!("register daemon {:?}", tags::shown(&h.name));
    text(&action, "version", &h.version, MAX_VERSION_BYTES)?;
    text(&action, "current_job_id", &h.current_job_id, MAX_ID_BYTES)
}

/// UpdateJob's lines: the daemon splits longer output into continuation
/// lines, so a line over the limit is a client's mistake and refused whole
/// (nothing of the batch is stored; the lines before it stay unsent).
pub fn log_lines(job_id: &str, lines: &[proto::LogLine]) -> Result<()> {
    // Every line of every job passes here: the messages are only built for
    // a line that is refused.
    let over = |l: &proto::LogLine| {
        l.output.len() > MAX_LOG_LINE_BYTES || l.stage.len() > MAX_LOG_STAGE_BYTES
    };
    let Some(line) = lines.iter().find(|l| over(l)) else {
        return Ok(());
    };
    let action = format!("update job {}", tags::shown(job_id));
    let which = format!("log line {}", line.seq);
    text(
        &action,
        &format!("{which} output"),
        &line.output,
        MAX_LOG_LINE_BYTES,
    )
    .map_err(|e| CoordError::Invalid(format!("{e} (split longer output into lines)")))?;
    text(
        &action,
        &format!("{which} stage"),
        &line.stage,
        MAX_LOG_STAGE_BYTES,
    )
}

/// FinishJob's header: an error over the limit is truncated with a marker
/// (a job's error is better cut than lost); the variables an import
/// reports are bounded like a push's metadata.
pub fn finish(mut req: proto::FinishJobRequest) -> Result<proto::FinishJobRequest> {
    req.error = truncate(std::mem::take(&mut req.error), MAX_ERROR_BYTES);
    let vars: usize = req.variables.iter().map(Message::encoded_len).sum();
    if vars > MAX_META_BYTES {
        return Err(CoordError::Invalid(format!(
            "finish job {}: its variables are {vars} bytes, over the limit of {MAX_META_BYTES} bytes",
            tags::shown(&req.job_id)
        )));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_the_field_and_the_limit() {
        let many: HashMap<String, String> = (0..=MAX_VALUES)
            .map(|i| (format!("v{i}"), String::new()))
            .collect();
        let e = values("push template \"t\"", "variables", &many).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "push template \"t\": {} variables, over the limit of {MAX_VALUES}",
                MAX_VALUES + 1
            )
        );
        let big = HashMap::from([("p".to_string(), "x".repeat(MAX_VALUE_BYTES + 1))]);
        let e = values("create workspace", "parameters", &big).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "parameters \"p\" is {} bytes",
                MAX_VALUE_BYTES + 1
            )),
            "{e}"
        );
        let total: HashMap<String, String> = (0..5)
            .map(|i| (format!("v{i}"), "x".repeat(MAX_VALUE_BYTES - 8)))
            .collect();
        let e = values("a", "variables", &total).unwrap_err();
        assert!(e.to_string().contains("together"), "{e}");
    }

    #[test]
    fn a_long_error_is_truncated_with_a_marker() {
        let req = finish(proto::FinishJobRequest {
            error: "e".repeat(2_500_000),
            ..Default::default()
        })
        .unwrap();
        assert!(req.error.len() <= MAX_ERROR_BYTES);
        assert!(req.error.ends_with("[truncated, 2500000 bytes in all]"));
    }
}
