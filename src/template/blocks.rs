//! Reading one block's attributes and nested blocks with positions, so
//! every problem is reported at the attribute's line, naming the block.

use hcl::Value;
use hcl::edit::Span;
use hcl::edit::structure::{Attribute, Block, Body};

use super::TemplateError;
use super::locals::Consts;
use super::source::SourceFile;
use super::value::{boolean, kind, literal, primitive_text, whole_number};

pub(super) struct Reader<'a> {
    src: &'a SourceFile,
    body: &'a Body,
    /// The top-level block, e.g. `coder_parameter "region"`.
    subject: String,
    /// Nested block path for attribute names, e.g. `prebuilds.scheduling.`.
    path: String,
    /// The block's own position.
    pub at: String,
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a SourceFile, block: &'a Block, subject: String) -> Reader<'a> {
        Reader {
            src,
            body: &block.body,
            subject,
            path: String::new(),
            at: src.at(block.span()),
        }
    }

    pub fn src(&self) -> &'a SourceFile {
        self.src
    }

    /// The error for a problem of this block at `at`.
    pub fn fail(&self, at: &str, problem: impl Into<String>) -> TemplateError {
        TemplateError::Invalid {
            at: at.to_string(),
            subject: self.subject.clone(),
            problem: problem.into(),
        }
    }

    /// An attribute's name in messages, with the nested block path.
    pub fn name(&self, key: &str) -> String {
        format!("{}{key}", self.path)
    }

    pub fn attr(&self, key: &str) -> Option<&'a Attribute> {
        self.body.get_attribute(key)
    }

    pub fn attr_at(&self, attr: &Attribute) -> String {
        self.src.at(attr.span())
    }

    /// A value that must be written literally (names, types, options):
    /// anything computed is refused with the expression in the message.
    pub fn literal(&self, key: &str) -> Result<Option<(Value, String)>, TemplateError> {
        let Some(attr) = self.attr(key) else {
            return Ok(None);
        };
        let at = self.attr_at(attr);
        let expr = hcl::Expression::from(attr.value.clone());
        match literal(&expr) {
            Ok(value) => Ok(Some((value, at))),
            Err(_) => Err(self.fail(
                &at,
                format!(
                    "{} must be a literal value, not the expression `{}`",
                    self.name(key),
                    self.src.slice(attr.value.span()).unwrap_or("?")
                ),
            )),
        }
    }

    /// A value that may use functions, variable defaults and locals built
    /// from them (`consts`), but nothing only terraform knows.
    pub fn constant(
        &self,
        key: &str,
        consts: &Consts,
    ) -> Result<Option<(Value, String)>, TemplateError> {
        let Some(attr) = self.attr(key) else {
            return Ok(None);
        };
        let at = self.attr_at(attr);
        let expr = hcl::Expression::from(attr.value.clone());
        let result = super::value::no_panic(|| consts.evaluate(&expr))
            .map_err(|problem| self.fail(&at, format!("{}: {problem}", self.name(key))))?;
        match result {
            Ok(value) => Ok(Some((value, at))),
            Err(problem) => Err(self.fail(&at, format!("{} {problem}", self.name(key)))),
        }
    }

    /// A string attribute; numbers and bools are converted as Terraform does.
    pub fn string_of(
        &self,
        key: &str,
        found: Option<(Value, String)>,
    ) -> Result<Option<String>, TemplateError> {
        match found {
            None | Some((Value::Null, _)) => Ok(None),
            Some((value, at)) => primitive_text(&value).map(Some).ok_or_else(|| {
                self.fail(
                    &at,
                    format!(
                        "{} must be a string, not a {}",
                        self.name(key),
                        kind(&value)
                    ),
                )
            }),
        }
    }

    pub fn literal_string(&self, key: &str) -> Result<Option<String>, TemplateError> {
        let found = self.literal(key)?;
        self.string_of(key, found)
    }

    pub fn required_string(&self, key: &str) -> Result<String, TemplateError> {
        self.literal_string(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn missing(&self, key: &str) -> TemplateError {
        self.fail(
            &self.at,
            format!("missing required attribute {}", self.name(key)),
        )
    }

    pub fn literal_bool(&self, key: &str) -> Result<Option<bool>, TemplateError> {
        match self.literal(key)? {
            None | Some((Value::Null, _)) => Ok(None),
            Some((value, at)) => boolean(&value).map(Some).ok_or_else(|| {
                self.fail(
                    &at,
                    format!("{} must be true or false, not {value}", self.name(key)),
                )
            }),
        }
    }

    /// A whole number from a literal or (with `ctx`) a constant expression.
    pub fn whole_number(
        &self,
        key: &str,
        ctx: Option<&Consts>,
    ) -> Result<Option<(i64, String)>, TemplateError> {
        let found = match ctx {
            Some(ctx) => self.constant(key, ctx)?,
            None => self.literal(key)?,
        };
        match found {
            None | Some((Value::Null, _)) => Ok(None),
            Some((value, at)) => match whole_number(&value) {
                Some(n) => Ok(Some((n, at))),
                None => Err(self.fail(
                    &at,
                    format!("{} must be a whole number, not {value}", self.name(key)),
                )),
            },
        }
    }

    /// Nested blocks named `ident`, each read with the path extended.
    pub fn blocks(&self, ident: &str) -> Vec<Reader<'a>> {
        self.body
            .blocks()
            .filter(|block| block.ident.as_str() == ident)
            .map(|block| Reader {
                src: self.src,
                body: &block.body,
                subject: self.subject.clone(),
                path: format!("{}{ident}.", self.path),
                at: self.src.at(block.span()),
            })
            .collect()
    }

    /// At most one nested `ident` block, as Coder's schema allows.
    pub fn at_most_one(&self, ident: &str) -> Result<Option<Reader<'a>>, TemplateError> {
        let mut blocks = self.blocks(ident).into_iter();
        let first = blocks.next();
        if let Some(second) = blocks.next() {
            return Err(self.fail(
                &second.at,
                format!("only one {}{ident} block is allowed", self.path),
            ));
        }
        Ok(first)
    }

    /// `count` and `for_each` would change how the block is referenced
    /// (`x[0]`) and whether it exists at all; evaluating that needs
    /// terraform, so such blocks are refused rather than misread.
    pub fn refuse_repetition(&self) -> Result<(), TemplateError> {
        for key in ["count", "for_each"] {
            if let Some(attr) = self.attr(key) {
                return Err(self.fail(
                    &self.attr_at(attr),
                    format!("{key} is not supported on this block"),
                ));
            }
        }
        Ok(())
    }

    /// A nested block written as an attribute's value, or the reverse, is a
    /// common slip (Coder's own docs once showed `parameters { … }`).
    pub fn refuse_block(&self, ident: &str, hint: &str) -> Result<(), TemplateError> {
        match self.blocks(ident).first() {
            Some(block) => Err(self.fail(&block.at, format!("{}{ident} {hint}", self.path))),
            None => Ok(()),
        }
    }
}
