//! Keeps sensitive values out of everything a job reports. Terraform hides
//! sensitive variables in its own plan output, but not in what a
//! provisioner prints (`local-exec` echoing a token), nor in diagnostics
//! quoting a value; every log line and error the runner hands out passes
//! through here first.

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
            .map(|v| v.value.clone())
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
}
