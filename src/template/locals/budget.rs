//! One memory budget per evaluation: every value computed at one push, or
//! for one build's tags, is charged, and each expression's bound is checked
//! before it runs.

use hcl::eval::Context;
use hcl::{Expression, Value};

use super::bound::{self, Roots};

/// How much memory one evaluation may fill with values: all the locals
/// evaluated at one push, or for one build's tags, and their results.
pub(in crate::template) const EVAL_BUDGET: usize = 16 << 20;

/// What is left of [`EVAL_BUDGET`], in approximate bytes: each value
/// costs its `Value` plus its strings' (and keys') bytes. A local's size
/// limit alone does not bound memory: 400 locals of 1 MiB, or a result
/// built from many, would each pass it.
pub(in crate::template) struct Budget {
    left: usize,
}

impl Budget {
    pub fn new() -> Budget {
        Budget { left: EVAL_BUDGET }
    }

    /// Charges `value`; `what` names it (a local and its file:line, or
    /// "the result") in the refusal.
    pub fn charge(&mut self, value: &Value, what: impl FnOnce() -> String) -> Result<(), String> {
        match self.left.checked_sub(approx_size(value)) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(format!(
                "{} takes the evaluation over its limit of {} MiB of values",
                what(),
                EVAL_BUDGET >> 20
            )),
        }
    }

    /// Refuses to evaluate `expr` when it could build more than is left:
    /// hcl-rs builds a value whole before it can be charged.
    pub fn allow(
        &self,
        expr: &Expression,
        ctx: &Context,
        roots: &mut Roots,
        what: impl FnOnce() -> String,
    ) -> Result<(), String> {
        let most = bound::bound(expr, ctx, roots);
        if most <= self.left {
            return Ok(());
        }
        Err(format!(
            "{} could build up to {} MiB of values, over what is left of the evaluation's limit of {} MiB",
            what(),
            most.div_ceil(1 << 20),
            EVAL_BUDGET >> 20
        ))
    }
}

/// A value's approximate size: its `Value` plus its strings' (and keys')
/// bytes, for every value it holds.
pub(in crate::template) fn approx_size(value: &Value) -> usize {
    let unit = std::mem::size_of::<Value>();
    // Iterative: a value may nest deeper than the stack allows.
    let mut stack = vec![value];
    let mut size = 0usize;
    while let Some(value) = stack.pop() {
        size = size.saturating_add(match value {
            Value::String(s) => unit + s.len(),
            Value::Array(items) => {
                stack.extend(items);
                unit
            }
            Value::Object(map) => {
                stack.extend(map.values());
                unit + map.keys().map(|k| unit + k.len()).sum::<usize>()
            }
            _ => unit,
        });
    }
    size
}
