//! Sensitive template variables reach terraform through a var file, not
//! `-var` on its command line: `/proc/<pid>/cmdline` is readable by every
//! user on the host, a file with mode 0600 only by the daemon's. The file
//! is given with `-var-file`, which has the same precedence as `-var`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{TemplateVariable, Variable};

/// The var file's name in the work dir (terraform loads it only when told).
pub(super) const VAR_FILE: &str = ".provisionerd-sensitive.tfvars";

/// Writes the sensitive values of `vars` to `dir/VAR_FILE` (0600) and
/// returns its path; `None` when there are none.
pub(super) fn write(
    dir: &Path,
    declared: &[TemplateVariable],
    vars: &[Variable],
) -> std::io::Result<Option<PathBuf>> {
    let text = render(declared, vars);
    if text.is_empty() {
        return Ok(None);
    }
    let path = dir.join(VAR_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    Ok(Some(path))
}

/// `name = value` lines for the sensitive variables. A value is read the
/// way `-var name=value` reads it: literally for a variable typed `string`
/// or untyped, as an HCL expression for any other type.
fn render(declared: &[TemplateVariable], vars: &[Variable]) -> String {
    let mut out = String::new();
    for var in vars.iter().filter(|v| v.sensitive) {
        let ty = declared
            .iter()
            .find(|d| d.name == var.name)
            .map(|d| d.type_expr.trim())
            .unwrap_or_default();
        let value = if ty.is_empty() || ty == "string" {
            quoted(&var.value)
        } else {
            var.value.clone()
        };
        out.push_str(&format!("{} = {value}\n", var.name));
    }
    out
}

/// An HCL string literal holding exactly `s`: escapes, and template
/// sequences (`${`, `%{`) doubled so nothing is interpolated.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

    fn declared(name: &str, ty: &str) -> TemplateVariable {
        TemplateVariable {
            name: name.into(),
            description: String::new(),
            type_expr: ty.into(),
            default_json: None,
            sensitive: true,
        }
    }

    #[test]
    fn only_sensitive_values_are_written_quoted_or_raw_by_type() {
        let decl = [
            declared("token", "string"),
            declared("ports", "list(number)"),
        ];
        let vars = [
            var("token", "a\"b\\c\n${x} %{y} $z", true),
            var("ports", "[80, 443]", true),
            var("region", "eu", false),
            var("untyped", "x", true),
        ];
        assert_eq!(
            render(&decl, &vars),
            "token = \"a\\\"b\\\\c\\n$${x} %%{y} $z\"\nports = [80, 443]\nuntyped = \"x\"\n"
        );
        assert_eq!(render(&decl, &[var("region", "eu", false)]), "");
    }

    #[test]
    fn the_file_is_private_and_absent_without_sensitive_values() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            write(dir.path(), &[], &[var("a", "b", false)]).unwrap(),
            None
        );
        let path = write(dir.path(), &[], &[var("a", "s3cret", true)])
            .unwrap()
            .expect("written");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = \"s3cret\"\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
