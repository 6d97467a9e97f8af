//! Tags: `key=value` pairs on provisioner keys and jobs, and the routing
//! rule that decides which daemon may take which job.

use std::collections::BTreeMap;

use crate::grpc::limits::{MAX_NAME_BYTES, MAX_TAG_KEY_BYTES, MAX_TAG_VALUE_BYTES, MAX_TAGS};

/// A tag set. Ordered so that displays and stored JSON are stable.
pub type Tags = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagError {
    #[error("{0:?}: expected key=value")]
    NoEquals(String),
    #[error("tag key {0:?}: must be 1-64 characters of a-z A-Z 0-9 _ - . /")]
    BadKey(String),
    #[error("tag {key:?}: value must be at most 256 printable characters")]
    BadValue { key: String },
    #[error("tag {0:?} given twice")]
    Duplicate(String),
    #[error("{0} tags: at most {MAX_TAGS} are allowed")]
    TooMany(usize),
}

/// `s` for an error message: a hostile megabyte is not echoed back (a
/// status message travels in a header), only its start and length.
pub fn shown(s: &str) -> String {
    const SHOWN: usize = 64;
    if s.len() <= SHOWN {
        return s.to_string();
    }
    let mut cut = SHOWN;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}

/// Parses `key=value` arguments into a tag set.
pub fn parse_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Tags, TagError> {
    let mut tags = Tags::new();
    for pair in pairs {
        let pair = pair.as_ref();
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| TagError::NoEquals(pair.to_string()))?;
        if tags.insert(k.to_string(), v.to_string()).is_some() {
            return Err(TagError::Duplicate(k.to_string()));
        }
    }
    validate(&tags)?;
    Ok(tags)
}

/// Checks every key and value: keys are short identifiers, values are
/// printable (no NUL or control characters, which break displays and
/// matching).
pub fn validate(tags: &Tags) -> Result<(), TagError> {
    if tags.len() > MAX_TAGS {
        return Err(TagError::TooMany(tags.len()));
    }
    for (k, v) in tags {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_TAG_KEY_BYTES
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
        if !key_ok {
            return Err(TagError::BadKey(shown(k)));
        }
        if v.len() > MAX_TAG_VALUE_BYTES || v.chars().any(char::is_control) {
            return Err(TagError::BadValue { key: k.clone() });
        }
    }
    Ok(())
}

/// May a daemon with `daemon` tags take a job with `job` tags?
///
/// The job's tags must be a subset of the daemon's — except that an untagged
/// job is taken only by an untagged daemon, so that dedicated (tagged) pools
/// never pick up general work (Coder's rule, after its issue #6442).
pub fn matches(daemon: &Tags, job: &Tags) -> bool {
    if job.is_empty() {
        return daemon.is_empty();
    }
    job.iter().all(|(k, v)| daemon.get(k) == Some(v))
}

/// Why a daemon with `daemon` tags may not take a job with `job` tags, in
/// words for an operator ("lacks is_prebuild=true"); `None` if it may.
pub fn mismatch(daemon: &Tags, job: &Tags) -> Option<String> {
    if job.is_empty() {
        return (!daemon.is_empty()).then(|| {
            format!(
                "is tagged {}; an untagged job goes only to untagged daemons",
                display(daemon)
            )
        });
    }
    let reasons: Vec<String> = job
        .iter()
        .filter_map(|(k, v)| match daemon.get(k) {
            Some(have) if have == v => None,
            Some(have) => Some(format!("has {k}={have}, the job wants {k}={v}")),
            None => Some(format!("lacks {k}={v}")),
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join(", "))
}

/// `k=v,k=v` for displays.
pub fn display(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Names of keys, daemons, templates and workspaces: 1-64 characters of
/// `a-z A-Z 0-9 - _ .`, starting with a letter or digit, so they are safe in
/// URLs, file names and displays.
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_BYTES
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// [`valid_name`] with the message every command shows for a bad name.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{what} name {:?}: use 1-{MAX_NAME_BYTES} characters of a-z A-Z 0-9 - _ . starting with a letter or digit",
            shown(name)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_names_the_tag_that_keeps_a_daemon_out() {
        let t = |pairs: &[&str]| parse_pairs(pairs).unwrap();
        let job = t(&["is_prebuild=true", "region=eu"]);
        assert_eq!(
            mismatch(&t(&["is_prebuild=true", "region=eu", "x=y"]), &job),
            None
        );
        assert_eq!(
            mismatch(&t(&["region=us"]), &job).as_deref(),
            Some("lacks is_prebuild=true, has region=us, the job wants region=eu")
        );
        assert_eq!(
            mismatch(&t(&["pool=a"]), &Tags::new()).as_deref(),
            Some("is tagged pool=a; an untagged job goes only to untagged daemons")
        );
        assert_eq!(mismatch(&Tags::new(), &Tags::new()), None);
        // mismatch agrees with matches on every case above.
        for (d, j) in [(t(&["region=us"]), job.clone()), (Tags::new(), Tags::new())] {
            assert_eq!(mismatch(&d, &j).is_none(), matches(&d, &j));
        }
    }

    fn t(pairs: &[&str]) -> Tags {
        parse_pairs(pairs).unwrap()
    }

    #[test]
    fn routing_table() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&[], &[], true),
            (&["is_prebuild=true"], &[], false),
            (&[], &["is_prebuild=true"], false),
            (&["is_prebuild=true"], &["is_prebuild=true"], true),
            (&["env=prod", "dc=chicago"], &["env=prod"], true),
            (&["dc=chicago"], &["dc=new_york"], false),
            (&["env=prod"], &["env=prod", "dc=chicago"], false),
        ];
        for (daemon, job, want) in cases {
            assert_eq!(matches(&t(daemon), &t(job)), *want, "{daemon:?} vs {job:?}");
        }
    }

    #[test]
    fn bad_tags_are_named() {
        assert_eq!(
            parse_pairs(&["novalue"]),
            Err(TagError::NoEquals("novalue".into()))
        );
        assert_eq!(parse_pairs(&["=x"]), Err(TagError::BadKey(String::new())));
        assert_eq!(
            parse_pairs(&["a=1", "a=2"]),
            Err(TagError::Duplicate("a".into()))
        );
        assert!(matches!(
            parse_pairs(&["a=x\0y"]),
            Err(TagError::BadValue { .. })
        ));
        assert_eq!(t(&["a=", "b=c=d"])["b"], "c=d");
    }
}
