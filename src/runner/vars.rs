//! Template variable declarations, read from the template's `.tf` and
//! `.tf.json` files with hcl-rs (JSON through the template reader's HCL
//! form of it), and the check that a job supplies a value for each one without a
//! default. The check runs before terraform so a missing value fails fast
//! with a message naming every missing variable, not terraform's first one.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::{Body, Expression};

use super::{TemplateVariable, Variable};

#[derive(Debug, thiserror::Error)]
pub enum VarsError {
    #[error("read template variables: list {}: {source}", .dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("read template variables: read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    /// `at` is the file name, plus " line N" when the parser knows it.
    #[error("read template variables: parse {at}: {message}")]
    Parse { at: String, message: String },
    #[error("read template variables: {file}: a variable block needs exactly one label (its name)")]
    Unnamed { file: String },
    #[error(
        "read template variables: variable \"{name}\" is declared twice ({first} and {second})"
    )]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
}

/// Every `variable "name" {}` block in the `*.tf` and `*.tf.json` files
/// directly in `dir`,
/// in file-name order, then declaration order.
pub fn template_variables(dir: &Path) -> Result<Vec<TemplateVariable>, VarsError> {
    let list = |source| VarsError::List {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(list)? {
        let entry = entry.map_err(list)?;
        let path = entry.path();
        // Symlinks followed, as terraform and the coordinator's parser
        // follow them: a variable declared in a linked file must not lose
        // its `sensitive` flag here.
        let config = path.extension().is_some_and(|ext| ext == "tf")
            || path.to_string_lossy().ends_with(".tf.json");
        if config && fs::metadata(&path).is_ok_and(|meta| meta.is_file()) {
            files.push(path);
        }
    }
    files.sort();

    let mut vars = Vec::new();
    let mut declared_in: HashMap<String, String> = HashMap::new();
    for path in files {
        let file = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy()
            .into_owned();
        let text = fs::read_to_string(&path).map_err(|source| VarsError::Read {
            file: file.clone(),
            source,
        })?;
        let text = if file.ends_with(".tf.json") {
            crate::template::tf_json_as_hcl(&file, &text).map_err(|err| match err {
                crate::template::TemplateError::Syntax { at, message } => {
                    VarsError::Parse { at, message }
                }
                other => VarsError::Parse {
                    at: file.clone(),
                    message: other.to_string(),
                },
            })?
        } else {
            text
        };
        let body = parse(&file, &text)?;
        for block in body.blocks().filter(|b| b.identifier() == "variable") {
            let [label] = block.labels() else {
                return Err(VarsError::Unnamed { file });
            };
            let name = label.as_str().to_string();
            if let Some(first) = declared_in.insert(name.clone(), file.clone()) {
                return Err(VarsError::Duplicate {
                    name,
                    first,
                    second: file,
                });
            }
            vars.push(declaration(name, block.body()));
        }
    }
    Ok(vars)
}

fn parse(file: &str, text: &str) -> Result<Body, VarsError> {
    hcl::parse(text).map_err(|err| match err {
        hcl::Error::Parse(err) => VarsError::Parse {
            at: format!("{file} line {}", err.location().line()),
            message: err.message().to_string(),
        },
        other => VarsError::Parse {
            at: file.to_string(),
            message: other.to_string(),
        },
    })
}

fn declaration(name: String, body: &Body) -> TemplateVariable {
    let attr = |key: &str| body.attributes().find(|a| a.key() == key).map(|a| a.expr());
    let constant = |expr: &Expression| expr.evaluate(&Context::new()).ok();
    TemplateVariable {
        name,
        description: attr("description")
            .and_then(constant)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        type_expr: attr("type").map(Expression::to_string).unwrap_or_default(),
        default_json: attr("default").map(|expr| {
            // A default that references functions or other values cannot be
            // evaluated here; its source text is still worth showing.
            constant(expr)
                .and_then(|value| serde_json::to_string(&value).ok())
                .unwrap_or_else(|| serde_json::Value::String(expr.to_string()).to_string())
        }),
        sensitive: attr("sensitive")
            .and_then(constant)
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    }
}

/// Checks `given` against the declarations: every variable without a default
/// needs a value, and every value must belong to a declared variable.
/// `what` names the job kind for the message ("template import").
pub(super) fn check_values(
    what: &str,
    declared: &[TemplateVariable],
    given: &[Variable],
) -> Result<(), String> {
    let has_value = |name: &str| given.iter().any(|v| v.name == name);
    let missing: Vec<&str> = declared
        .iter()
        .filter(|d| d.default_json.is_none() && !has_value(&d.name))
        .map(|d| d.name.as_str())
        .collect();
    let mut unknown: Vec<&str> = given
        .iter()
        .filter(|v| !declared.iter().any(|d| d.name == v.name))
        .map(|v| v.name.as_str())
        .collect();
    unknown.dedup();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "variable(s) {} have no default and no value was given",
            missing.join(", ")
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "variable(s) {} are not declared by the template",
            unknown.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: {}", problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Vec<TemplateVariable>, VarsError> {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("main.tf"), text).expect("write main.tf");
        fs::write(dir.path().join("notes.txt"), "variable \"ignored\" {}").expect("write notes");
        template_variables(dir.path())
    }

    #[test]
    fn reads_declarations() {
        let vars = parse_one(
            r#"
variable "region" {
  type        = string
  description = "Where to run"
}
variable "sizes" {
  type    = list(number)
  default = [1, 2.5]
}
variable "token" {
  sensitive = true
  default   = null
}
variable "computed" {
  default = upper("x")
}
resource "terraform_data" "x" {}
"#,
        )
        .expect("parse");
        let summary: Vec<_> = vars
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.type_expr.as_str(),
                    v.default_json.as_deref(),
                    v.sensitive,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("region", "string", None, false),
                ("sizes", "list(number)", Some("[1,2.5]"), false),
                ("token", "", Some("null"), true),
                ("computed", "", Some(r#""upper(\"x\")""#), false),
            ]
        );
        assert_eq!(vars[0].description, "Where to run");
    }

    #[test]
    fn reads_tf_json_declarations_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a.tf"), "variable \"region\" {}\n").expect("write");
        fs::write(
            dir.path().join("b.tf.json"),
            r#"{"variable": {"token": {"type": "string", "sensitive": true}, "n": {"default": 1}}}"#,
        )
        .expect("write");
        let vars = template_variables(dir.path()).expect("read");
        let summary: Vec<_> = vars
            .iter()
            .map(|v| (v.name.as_str(), v.default_json.as_deref(), v.sensitive))
            .collect();
        assert_eq!(
            summary,
            [
                ("region", None, false),
                ("token", None, true),
                ("n", Some("1"), false)
            ]
        );
        let value = |name: &str| Variable {
            name: name.into(),
            value: "v".into(),
            sensitive: false,
        };
        assert_eq!(
            check_values("build", &vars, &[value("region"), value("token")]),
            Ok(())
        );
        fs::write(dir.path().join("c.tf.json"), "{\n  \"variable\": [,]\n}").expect("write");
        let msg = template_variables(dir.path()).unwrap_err().to_string();
        assert_eq!(
            msg,
            "read template variables: parse c.tf.json:2:16: expected a value"
        );
    }

    #[test]
    fn parse_error_names_file_and_line() {
        let err = parse_one("variable \"a\" {\n  type = string\n\n  default = \n")
            .expect_err("must fail");
        let msg = err.to_string();
        assert!(
            msg.starts_with("read template variables: parse main.tf line "),
            "{msg}"
        );
    }

    #[test]
    fn check_lists_missing_and_unknown_names() {
        let declared = parse_one(
            "variable \"region\" {}\nvariable \"zone\" {}\nvariable \"n\" { default = 1 }",
        )
        .expect("parse");
        let value = |name: &str| Variable {
            name: name.into(),
            value: "v".into(),
            sensitive: false,
        };
        assert_eq!(
            check_values("template import", &declared, &[value("zone")]),
            Err(
                "template import: variable(s) region have no default and no value was given".into()
            )
        );
        assert_eq!(
            check_values(
                "workspace build",
                &declared,
                &[value("region"), value("zone"), value("nope")]
            ),
            Err("workspace build: variable(s) nope are not declared by the template".into())
        );
        assert_eq!(
            check_values("x", &declared, &[value("region"), value("zone")]),
            Ok(())
        );
    }
}
