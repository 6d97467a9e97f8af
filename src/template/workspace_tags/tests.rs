//! `coder_workspace_tags` reading.

use crate::template::tests::{parse_one, refused};

#[test]
fn keeps_keys_expressions_and_count() {
    let meta = parse_one(
        r#"
data "coder_workspace_tags" "custom" {
  tags = {
    "is_prebuild" = data.coder_workspace_owner.me.name == "prebuilds" ? "true" : "false"
    zone          = <<-EOT
      eu-${lower("A")}
    EOT
  }
}
data "coder_workspace_tags" "gpu" {
  count = 1
  tags  = { "gpu" = "yes" }
}
"#,
    )
    .expect("parse");
    let tags = &meta.workspace_tags;
    assert_eq!(tags[0].key, "is_prebuild");
    assert_eq!(tags[0].at, "main.tf:4");
    assert_eq!(
        tags[0].expr,
        r#"data.coder_workspace_owner.me.name == "prebuilds" ? "true" : "false""#
    );
    assert_eq!(tags[0].count, None);
    assert_eq!(tags[1].key, "zone");
    assert!(tags[1].expr.starts_with("<<-EOT"), "{}", tags[1].expr);
    assert_eq!(tags[2].count.as_deref(), Some("1"));
    for tag in tags {
        tag.expr
            .parse::<hcl::Expression>()
            .unwrap_or_else(|err| panic!("{:?} re-parses: {err}", tag.expr));
    }
}

#[test]
fn refuses_what_coder_refuses() {
    let cases = [
        (
            "data \"coder_workspace_tags\" \"t\" {\n}\n",
            "main.tf:1: coder_workspace_tags \"t\": missing required attribute tags",
        ),
        (
            "data \"coder_workspace_tags\" \"t\" {\n  tags = merge({}, {})\n}\n",
            "main.tf:2: coder_workspace_tags \"t\": tags must be written as an object",
        ),
        (
            "data \"coder_workspace_tags\" \"t\" {\n  tags = {\n    (var.k) = \"v\"\n  }\n}\n",
            "main.tf:3: coder_workspace_tags \"t\": tag keys must be literal names or strings, not `(var.k)`",
        ),
        (
            "data \"coder_workspace_tags\" \"t\" {\n  for_each = {}\n  tags = {}\n}\n",
            "for_each is not supported on coder_workspace_tags",
        ),
        (
            "data \"coder_workspace_tags\" \"a\" {\n  tags = { x = \"1\" }\n}\ndata \"coder_workspace_tags\" \"b\" {\n  tags = { x = \"2\" }\n}\n",
            "main.tf:5: coder_workspace_tags \"b\": tag \"x\" is also defined at main.tf:2",
        ),
    ];
    for (text, want) in cases {
        let msg = refused(text);
        assert!(msg.contains(want), "got: {msg}\nwant: {want}");
    }
    // With count, the same key in two blocks is fine until both apply.
    parse_one("data \"coder_workspace_tags\" \"a\" {\n  count = 1\n  tags = { x = \"1\" }\n}\ndata \"coder_workspace_tags\" \"b\" {\n  count = 0\n  tags = { x = \"2\" }\n}\n")
        .expect("counted blocks may share keys");
}
