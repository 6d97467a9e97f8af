//! Locals written to hurt the coordinator: chains longer than the limit
//! in any order, values that grow past the memory budget, many locals.
//! Each input is just big enough to show a limit is hit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::template::tests::{parse_one, refused};
use crate::template::{LocalDecl, TemplateMeta, import_tags};

/// `a0 = 1`, `aN = local.aN-1 + 1`: each local declared after the one it
/// uses, so a walk that marks locals done never sees a long path.
fn chain(n: usize) -> String {
    let mut text = String::from("locals {\n  a0 = 1\n");
    for i in 1..n {
        text.push_str(&format!("  a{i} = local.a{} + 1\n", i - 1));
    }
    text.push_str("}\n");
    text
}

fn default_of(n: usize) -> String {
    format!(
        "{}data \"coder_parameter\" \"p\" {{\n  name    = \"p\"\n  type    = \"number\"\n  default = local.a{}\n}}\n",
        chain(n),
        n - 1
    )
}

#[test]
fn a_chain_declared_in_dependency_order_is_held_to_64_locals() {
    let meta = parse_one(&default_of(64)).expect("a chain of 64 locals is allowed");
    assert_eq!(meta.parameters[0].default.as_deref(), Some("64"));
    let msg = refused(&default_of(65));
    assert_eq!(
        msg,
        "parse template: main.tf:66: local.a64: is at the end of a chain of more than 64 locals"
    );
}

#[test]
fn a_long_chain_nothing_uses_is_refused_fast() {
    let text = chain(10_000);
    let started = Instant::now();
    let msg = refused(&text);
    assert_eq!(
        msg,
        "parse template: main.tf:66: local.a64: is at the end of a chain of more than 64 locals"
    );
    // Generous for a loaded machine; a quadratic walk takes far longer.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_chain_stored_longer_than_the_push_allows_fails_the_build_tags() {
    let mut meta = parse_one(&format!(
        "{}data \"coder_workspace_tags\" \"t\" {{\n  tags = {{ n = local.a63 }}\n}}\n",
        chain(64)
    ))
    .expect("parse");
    let tags = import_tags(&meta, &BTreeMap::new()).expect("a chain of 64 evaluates");
    assert_eq!(tags.get("n").map(String::as_str), Some("64"));
    // Stored by something other than this push: one local more.
    meta.locals.push(LocalDecl {
        name: "a64".into(),
        expr: "local.a63 + 1".into(),
        at: "main.tf:66".into(),
    });
    meta.workspace_tags[0].expr = "local.a64".into();
    let msg = import_tags(&meta, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("local.a0 (main.tf:2) is at the end of a chain of more than 64 locals"),
        "{msg}"
    );
}

#[test]
fn more_than_10000_locals_are_refused() {
    let mut text = String::from("locals {\n");
    for i in 0..=10_000 {
        text.push_str(&format!("  x{i} = 1\n"));
    }
    text.push_str("}\n");
    assert_eq!(
        refused(&text),
        "parse template: main.tf:10002: local.x10000: is one local too many: a template may declare at most 10000"
    );
}

/// `s0 = ","` and `sN = "${local.sN-1}${local.sN-1}"`: `s{n}` is 2^n
/// bytes, well under a local's 1 MiB limit.
fn doubling(n: usize) -> String {
    let mut text = String::from("locals {\n  s0 = \",\"\n");
    for i in 1..=n {
        text.push_str(&format!(
            "  s{i} = \"${{local.s{0}}}${{local.s{0}}}\"\n",
            i - 1
        ));
    }
    text
}

fn number_default(locals: &str, expr: &str) -> String {
    format!(
        "{locals}}}\ndata \"coder_parameter\" \"p\" {{\n  name    = \"p\"\n  type    = \"number\"\n  default = {expr}\n}}\n"
    )
}

/// In both refusals: a value over the budget, or an expression that could
/// build one.
const OVER_BUDGET: &str = "limit of 16 MiB";

#[test]
fn locals_each_under_their_limit_are_refused_past_the_evaluation_budget() {
    // Each split is 128 Ki values, each under the 1 MiB value limit; a
    // handful fill the budget (400 of them would take tens of GB).
    let mut locals = doubling(17);
    for i in 1..=8 {
        locals.push_str(&format!("  b{i} = split(\",\", local.s17)\n"));
    }
    let all: Vec<String> = (1..=8).map(|i| format!("local.b{i}")).collect();
    let msg = refused(&number_default(
        &locals,
        &format!("length(concat({}))", all.join(", ")),
    ));
    assert!(msg.contains(OVER_BUDGET), "{msg}");
    assert!(
        msg.starts_with("parse template: main.tf:") && msg.contains("local.b"),
        "{msg}"
    );
}

#[test]
fn a_result_built_from_one_local_many_times_is_refused_past_the_budget() {
    // 40 copies of a 512 KiB string: 20 MiB made by the expression itself.
    let copies = vec!["local.s19"; 40].join(", ");
    let msg = refused(&number_default(
        &doubling(19),
        &format!("join(\"\", [{copies}])"),
    ));
    assert!(
        msg.contains("the result") && msg.contains(OVER_BUDGET),
        "{msg}"
    );

    // The same per build, in a workspace tag.
    let text = format!(
        "{}}}\ndata \"coder_workspace_tags\" \"t\" {{\n  tags = {{ n = join(\"\", [{copies}]) }}\n}}\n",
        doubling(19)
    );
    let meta = parse_one(&text).expect("tags are evaluated per build, not at parse");
    let msg = import_tags(&meta, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("the result") && msg.contains(OVER_BUDGET),
        "{msg}"
    );
}

#[test]
fn an_expression_that_multiplies_its_inputs_is_refused_before_it_runs() {
    // Each builds about 20-40 MiB only to count it: the result is small,
    // so only a bound checked before evaluating can refuse it.
    let mut locals = doubling(19);
    locals.push_str("  l = split(\",\", local.s6)\n");
    for expr in [
        "length([for x in local.l : local.s19])".to_string(),
        format!("length([{}])", vec!["local.s19"; 40].join(", ")),
        "length(replace(local.s19, \",\", local.s6))".to_string(),
    ] {
        let msg = refused(&number_default(&locals, &expr));
        assert!(
            msg.contains("the result could build up to") && msg.contains(OVER_BUDGET),
            "{expr}: {msg}"
        );
    }
    // Small inputs pass, loops and all.
    let meta = parse_one(&number_default(
        &doubling(4),
        "length([for x in split(\",\", local.s4) : \"${x}${local.s4}\"])",
    ))
    .expect("a small loop is allowed");
    assert_eq!(meta.parameters[0].default.as_deref(), Some("17"));
}

#[test]
fn try_in_a_local_and_in_a_default_works_at_push() {
    let meta = parse_one(
        r#"
variable "cfg" {
  default = { r = "us" }
}
locals {
  region = try(var.cfg["missing"], "eu")
}
data "coder_parameter" "a" {
  name    = "a"
  default = local.region
}
data "coder_parameter" "b" {
  name    = "b"
  default = try(var.cfg["r"], "eu")
}
"#,
    )
    .expect("parse");
    let defaults: Vec<_> = meta.parameters.iter().map(|p| p.default.clone()).collect();
    assert_eq!(defaults, [Some("eu".to_string()), Some("us".to_string())]);
}

#[test]
fn a_version_stored_before_locals_were_read_is_told_to_be_pushed_again() {
    let meta = parse_one(
        "locals {\n  zone = \"eu\"\n}\ndata \"coder_workspace_tags\" \"t\" {\n  tags = { zone = local.zone }\n}\n",
    )
    .expect("parse");
    // What a push before locals were read stored: the JSON had neither.
    let mut json = serde_json::to_value(&meta).expect("to json");
    let fields = json.as_object_mut().expect("an object");
    assert!(fields.remove("locals").is_some() && fields.remove("locals_read").is_some());
    let meta: TemplateMeta = serde_json::from_value(json).expect("old metadata");
    let msg = import_tags(&meta, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "references local.zone, but this template version was stored before locals were read; push the template again"
        ),
        "{msg}"
    );
}

#[test]
fn tags_sharing_a_big_local_evaluate_it_once_per_build() {
    // About 1 MiB of locals; evaluated again for each of 30 tags it would
    // fill the build's budget twice over.
    let tags: Vec<String> = (0..30)
        .map(|i| format!("    k{i} = length(local.s19) > 0 ? \"y\" : \"\"\n"))
        .collect();
    let text = format!(
        "{}}}\ndata \"coder_workspace_tags\" \"t\" {{\n  tags = {{\n{}  }}\n}}\n",
        doubling(19),
        tags.concat()
    );
    let meta = parse_one(&text).expect("parse");
    let tags = import_tags(&meta, &BTreeMap::new()).expect("tags");
    assert_eq!(tags.len(), 30);
    assert_eq!(tags.get("k29").map(String::as_str), Some("y"));
}
