//! Provisioner keys and admin tokens in memory: a type whose `Debug` never
//! shows the value, so a config struct printed with `{:?}` (or a clap
//! error) cannot leak one into a log; and reading one from a file.

use std::fmt;
use std::path::Path;

/// A credential. Only [`Secret::expose`] gives the text, so every place
/// that sends or hashes it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Surrounding whitespace is dropped: a secret pasted with its newline
    /// is still the secret.
    pub fn new(value: &str) -> Secret {
        Secret(value.trim().to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads a secret from `path` (named `flag` in errors), trimmed.
    /// An unreadable or empty file is an error naming the file; a file
    /// others may read works but logs a warning.
    pub fn from_file(flag: &str, path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))?;
        let secret = Secret::new(&text);
        if secret.is_empty() {
            return Err(format!("{flag} {}: the file is empty", path.display()));
        }
        warn_if_shared(flag, path);
        Ok(secret)
    }
}

/// World-readable secrets are an easy leak (backups, other users); still
/// accepted, since the operator may know better. Group access is not
/// warned about: Kubernetes secret volumes with an `fsGroup` are 0440, the
/// group being the daemon's own.
fn warn_if_shared(flag: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:o}"),
                "{flag}: the file is readable by every user; chmod 600 it"
            );
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(s))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(" pdk_abc\n");
        assert_eq!(s.expose(), "pdk_abc");
        assert!(!format!("{s:?}").contains("pdk_abc"));
        assert!(!format!("{:?}", Some(s)).contains("pdk_abc"));
    }

    #[test]
    fn file_is_trimmed_and_empty_or_missing_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "pdk_123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Secret::from_file("--key-file", &path).unwrap().expose(),
            "pdk_123"
        );
        std::fs::write(&path, " \n").unwrap();
        let err = Secret::from_file("--key-file", &path).unwrap_err();
        assert!(err.contains("--key-file") && err.contains("empty"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        let missing = dir.path().join("nope");
        let err = Secret::from_file("--key-file", &missing).unwrap_err();
        assert!(err.contains("nope") && err.contains("cannot read"), "{err}");
    }
}
