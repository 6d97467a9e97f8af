//! Every function, through hcl-rs's evaluator as templates use them.

use std::str::FromStr;

use hcl::Value;
use hcl::eval::{Context, Evaluate};

fn eval(text: &str) -> Result<Value, String> {
    let mut ctx = Context::new();
    super::declare(&mut ctx);
    let expr = hcl::Expression::from_str(text).map_err(|e| e.to_string())?;
    expr.evaluate(&ctx).map_err(|e| e.to_string())
}

fn ok(text: &str) -> String {
    match eval(text) {
        Ok(Value::String(s)) => s,
        Ok(other) => serde_json::to_string(&other).expect("json"),
        Err(err) => panic!("{text}: {err}"),
    }
}

fn fails(text: &str, want: &str) {
    let err = eval(text).expect_err(text);
    assert!(err.contains(want), "{text}: {err}");
}

#[test]
fn string_functions() {
    assert_eq!(ok(r#"lower("AbC")"#), "abc");
    assert_eq!(ok(r#"upper("AbC")"#), "ABC");
    assert_eq!(ok(r#"upper(12)"#), "12");
    assert_eq!(ok("trimspace(\"  a b \\n\")"), "a b");
    assert_eq!(ok(r#"startswith("prebuilds", "pre")"#), "true");
    assert_eq!(ok(r#"startswith("alice", "pre")"#), "false");
    assert_eq!(ok(r#"endswith("eu-west", "west")"#), "true");
    assert_eq!(ok(r#"replace("a-b-c", "-", "_")"#), "a_b_c");
    assert_eq!(
        ok(r#"replace("eu-west-1", "/-(\\d+)$/", ":$1")"#),
        "eu-west:1"
    );
    assert_eq!(ok(r#"split(",", "a,b,,c")"#), r#"["a","b","","c"]"#);
    assert_eq!(ok(r#"split("", "ab")"#), r#"["a","b"]"#);
    assert_eq!(ok(r#"join("-", ["a", "b"], ["c"])"#), "a-b-c");
    assert_eq!(ok(r#"join(",", [1, true])"#), "1,true");
    fails(
        r#"lower(["a"])"#,
        "lower: argument 1 must be a string, not a list",
    );
    fails(
        r#"replace("a", "/(/", "b")"#,
        "is not a valid regular expression",
    );
    fails(
        r#"join(",", "a")"#,
        "join: argument 2 must be a list, not a string",
    );
    fails(
        r#"join(",", [["a"]])"#,
        "join: list elements must be strings, not a list",
    );
}

#[test]
fn format_verbs() {
    assert_eq!(ok(r#"format("%s-%d-%v-%%", "a", 3, true)"#), "a-3-true-%");
    assert_eq!(ok(r#"format("%v", ["a"])"#), r#"["a"]"#);
    assert_eq!(ok(r#"format("%q", "x")"#), "\"x\"");
    assert_eq!(ok(r#"format("%t %f", false, 1.5)"#), "false 1.500000");
    assert_eq!(ok(r#"format("%d", "42")"#), "42");
    fails(r#"format("%d", 1.5)"#, "%d cannot format a number");
    fails(r#"format("%s %s", "a")"#, "not enough arguments for %s");
    fails(
        r#"format("%s", "a", "b")"#,
        "too many arguments; the format string uses 1",
    );
    fails(r#"format("%x", 1)"#, "unsupported verb %x");
    fails(r#"format("50%")"#, "ends with a lone %");
}

#[test]
fn collection_functions() {
    assert_eq!(ok(r#"contains(["a", "b"], "b")"#), "true");
    assert_eq!(ok(r#"contains(["a", "b"], "c")"#), "false");
    assert_eq!(ok(r#"lookup({a = "x"}, "a")"#), "x");
    assert_eq!(ok(r#"lookup({a = "x"}, "b", "d")"#), "d");
    assert_eq!(ok(r#"coalesce(null, "", "z")"#), "z");
    assert_eq!(ok(r#"length("héllo")"#), "5");
    assert_eq!(ok(r#"length([1, 2])"#), "2");
    assert_eq!(ok(r#"length({a = 1})"#), "1");
    assert_eq!(ok(r#"concat(["a"], [], ["b", "c"])"#), r#"["a","b","c"]"#);
    fails(
        r#"contains("ab", "a")"#,
        "contains: argument 1 must be a list",
    );
    fails(
        r#"lookup({a = "x"}, "b")"#,
        "the map has no key \"b\" and no default",
    );
    fails(r#"lookup(["a"], "b")"#, "lookup: argument 1 must be a map");
    fails(
        r#"coalesce(null, "")"#,
        "every argument is null or an empty string",
    );
    fails("length(true)", "cannot take the length of a bool");
    fails(r#"concat(["a"], "b")"#, "concat: argument 2 must be a list");
}

#[test]
fn conversion_functions() {
    assert_eq!(ok("tostring(3)"), "3");
    assert_eq!(ok("tostring(true)"), "true");
    assert_eq!(ok("tostring(null)"), "null");
    assert_eq!(ok(r#"tonumber("2.50")"#), "2.5");
    assert_eq!(ok(r#"tonumber("4") + 1"#), "5");
    assert_eq!(ok(r#"tobool("true")"#), "true");
    assert_eq!(ok("tobool(false)"), "false");
    assert_eq!(ok(r#"jsonencode(["a", 1])"#), r#"["a",1]"#);
    assert_eq!(ok(r#"jsondecode("[\"a\"]")[0]"#), "a");
    fails(
        r#"tostring(["a"])"#,
        "tostring: cannot convert a list to a string",
    );
    fails(
        r#"tonumber("x")"#,
        "tonumber: cannot convert \"x\" to a number",
    );
    fails(
        r#"tobool("yes")"#,
        "tobool: cannot convert \"yes\" to a bool",
    );
    fails(r#"jsondecode("{")"#, "jsondecode: \"{\" is not JSON");
    // Only reached for a `try` whose arguments all failed.
    fails(r#"try("why")"#, "why");
}
