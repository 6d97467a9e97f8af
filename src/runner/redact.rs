//! Keeps sensitive values out of everything a job reports. Terraform hides
//! sensitive variables in its own plan output, but not in what a
//! provisioner prints (`local-exec` echoing a token), nor in diagnostics
//! quoting a value; every log line and error the runner hands out passes
//! through here first. Encoded forms a script commonly prints (base64,
//! JSON-escaped, URL-encoded) are hidden too, as GitHub Actions does.

use super::Variable;

/// What a sensitive value is replaced with (Coder's word).
pub const REDACTED: &str = "*redacted*";

/// The sensitive values of one job, longest first so that a value which
/// contains another is replaced whole.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(variables: &[Variable]) -> Self {
        let mut secrets: Vec<String> = variables
            .iter()
            .filter(|v| v.sensitive && !v.value.is_empty())
            .flat_map(|v| encodings(&v.value).into_iter().chain(lines_of(&v.value)))
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every sensitive value replaced.
    pub fn apply(&self, text: String) -> String {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return text;
        }
        self.secrets
            .iter()
            .fold(text, |t, s| t.replace(s.as_str(), REDACTED))
    }
}

/// The lines of a multi-line value (a PEM key): log lines are redacted one
/// at a time, so the whole value never appears in one of them. Very short
/// lines are left alone, as they would blank unrelated text.
fn lines_of(value: &str) -> Vec<String> {
    if !value.contains('\n') {
        return Vec::new();
    }
    value
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 4)
        .map(str::to_string)
        .collect()
}

/// A value and the encodings of it worth hiding. Base64 of a very short
/// value is left out: two or three characters would blank unrelated text.
fn encodings(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut all = vec![value.to_string()];
    if value.len() >= 4 {
        let padded = STANDARD.encode(value);
        all.push(padded.trim_end_matches('=').to_string());
        all.push(padded);
        all.push(URL_SAFE_NO_PAD.encode(value));
    }
    let json = serde_json::to_string(value).unwrap_or_default();
    if let Some(inner) = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')) {
        all.push(inner.to_string());
    }
    all.push(
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    );
    all.retain(|s| !s.is_empty());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str, value: &str, sensitive: bool) -> Variable {
        Variable {
            name: name.into(),
            value: value.into(),
            sensitive,
        }
    }

    #[test]
    fn sensitive_values_are_replaced_longest_first_and_others_kept() {
        let r = Redactor::new(&[
            var("token", "s3cr3t", true),
            var("token_long", "s3cr3t-and-more", true),
            var("region", "eu-west", false),
            var("empty", "", true),
        ]);
        assert_eq!(
            r.apply("token=s3cr3t-and-more then s3cr3t in eu-west".into()),
            "token=*redacted* then *redacted* in eu-west"
        );
        assert_eq!(r.apply("nothing secret".into()), "nothing secret");
        assert_eq!(Redactor::default().apply("s3cr3t".into()), "s3cr3t");
    }

    #[test]
    fn encoded_forms_of_a_value_are_hidden_too() {
        let secret = "p@ss w\"rd/+?";
        let r = Redactor::new(&[var("token", secret, true)]);
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let json = serde_json::json!({ "token": secret }).to_string();
        let pct = "p%40ss%20w%22rd%2F%2B%3F";
        for shown in [b64.as_str(), url.as_str(), json.as_str(), pct] {
            let out = r.apply(format!("echo {shown} done"));
            assert!(out.contains(REDACTED), "{shown} not hidden: {out}");
            assert!(!out.contains(secret) && !out.contains(shown), "{out}");
        }
        // Short values are matched as they are, never through base64.
        let short = Redactor::new(&[var("pin", "ab", true)]);
        assert_eq!(short.apply("YWI= ab".into()), "YWI= *redacted*");
    }

    #[test]
    fn each_line_of_a_multi_line_value_is_hidden() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkq\nab\n-----END KEY-----";
        let r = Redactor::new(&[var("key", key, true)]);
        assert_eq!(r.apply("  MIIEvQIBADANBgkq  ".into()), "  *redacted*  ");
        assert_eq!(r.apply("-----END KEY-----".into()), "*redacted*");
        assert_eq!(r.apply("ab cd".into()), "ab cd", "short lines are left");
    }
}
