//! Writing HCL text: JSON strings as quoted templates or literals, and
//! the output with each HCL line's JSON line.

use hcl::edit::Span;
use hcl::edit::template::Element;

/// A JSON string as the HCL of the same template: literal parts escaped
/// for a quoted string, interpolations and directives as written. A string
/// that is one interpolation is its expression, as it evaluates to the
/// expression's value (a number stays a number).
pub(super) fn template(s: &str) -> Result<String, String> {
    let parsed = hcl::edit::parser::parse_template(s)
        .map_err(|err| format!("{s:?} is not a valid template: {}", err.message()))?;
    let elements: Vec<&Element> = parsed.iter().collect();
    if let [Element::Interpolation(i)] = elements[..]
        && !i.strip.strip_start()
        && !i.strip.strip_end()
        && let Some(expr) = i.expr.span().and_then(|span| s.get(span))
    {
        let expr = expr.trim();
        // An expression spanning lines would be cut at the first newline
        // as an attribute's value; in parentheses HCL reads across them.
        return Ok(if expr.contains('\n') {
            format!("({expr})")
        } else {
            expr.to_string()
        });
    }
    let mut out = String::from("\"");
    for element in elements {
        match element {
            Element::Literal(lit) => out.push_str(&escaped(&no_markers(lit))),
            other => {
                let source = other.span().and_then(|span| s.get(span));
                out.push_str(
                    source.ok_or_else(|| format!("{s:?}: a template part has no source text"))?,
                );
            }
        }
    }
    out.push('"');
    Ok(out)
}

/// `${` and `%{` kept literal (HCL's `$${` and `%%{`).
pub(super) fn no_markers(s: &str) -> String {
    s.replace("${", "$${").replace("%{", "%%{")
}

pub(super) fn quoted(s: &str) -> String {
    format!("\"{}\"", escaped(s))
}

fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The HCL text being written, line by line.
#[derive(Default)]
pub(super) struct Out {
    pub text: String,
    pub lines: Vec<usize>,
    /// The JSON line of the HCL line being written, once it has text.
    current: Option<usize>,
}

impl Out {
    pub(super) fn write(&mut self, line: usize, s: &str) {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                self.end();
            }
            if !part.is_empty() {
                self.current.get_or_insert(line);
                self.text.push_str(part);
            }
        }
    }

    pub(super) fn end(&mut self) {
        if let Some(line) = self.current.take() {
            self.text.push('\n');
            self.lines.push(line);
        }
    }

    pub(super) fn open(&mut self, line: usize, ident: &str, labels: &[String]) {
        let labels: Vec<String> = labels.iter().map(|l| quoted(l)).collect();
        let head = [ident.to_string()].into_iter().chain(labels);
        self.write(line, &format!("{} {{", head.collect::<Vec<_>>().join(" ")));
        self.end();
    }

    pub(super) fn close(&mut self, line: usize) {
        self.write(line, "}");
        self.end();
    }
}
