//! `templates push --name/-m/--activate=false`, `templates versions
//! list|promote|archive|unarchive`, and the workspace side: `--template-version`,
//! `--automatic-updates`, `workspaces update|autoupdate|show`, and the
//! VERSION column of `jobs list`; refusals exit with the documented codes.

mod refusals;

use std::process::Output;

use serde_json::Value;

use super::{run, stderr, stdout};
use crate::common::{Coord, Daemon};
use crate::versions::versioned;

struct Cli {
    env: Vec<(&'static str, String)>,
}

impl Cli {
    fn of(coord: &Coord) -> Cli {
        Cli {
            env: vec![
                ("PROVISIONERD_URL", coord.url.clone()),
                ("PROVISIONERD_TOKEN", coord.token.clone()),
            ],
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(args, &env).await
    }

    /// Runs; fails the test unless it exits 0: (stdout, stderr).
    async fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        (stdout(&out), stderr(&out))
    }

    async fn json(&self, args: &[&str]) -> Value {
        let (text, _) = self.ok(args).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Runs; fails the test unless it exits `code`: its stderr.
    async fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stderr(&out)
    }
}

/// A coordinator with one daemon under `root`, and a CLI talking to it.
async fn stack(root: &std::path::Path) -> (Coord, Daemon, Cli) {
    let coord = Coord::start(&root.join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &root.join("c1"));
    let cli = Cli::of(&coord);
    (coord, d, cli)
}

/// The table's rows after the header, as whitespace-split words.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (coord, d, cli) = stack(root).await;
    let one = versioned(root, "one");
    let one = one.to_str().unwrap();
    let two = versioned(root, "two");
    let two = two.to_str().unwrap();

    let (_, err) = cli
        .ok(&[
            "templates",
            "push",
            "app",
            "--dir",
            one,
            "--name",
            "first",
            "-m",
            "the first one",
            "--wait",
        ])
        .await;
    assert!(
        err.contains("Pushed template \"app\" version first ("),
        "{err}"
    );
    let (_, err) = cli
        .ok(&[
            "templates",
            "push",
            "app",
            "--dir",
            two,
            "--activate=false",
            "--wait",
        ])
        .await;
    assert!(
        err.contains("version v2 (") && err.contains("it stays inactive until promoted"),
        "{err}"
    );

    // The table: newest first, v2 imported but not active.
    let (table, _) = cli.ok(&["templates", "versions", "list", "app"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "ACTIVE",
            "WORKSPACES",
            "CREATED",
            "BY",
            "CREATED",
            "MESSAGE"
        ]
    );
    let r = rows(&table);
    assert_eq!(r[0][..3], ["v2", "succeeded", "0"], "{table}");
    assert_eq!(r[1][..4], ["first", "succeeded", "yes", "0"], "{table}");
    assert!(
        table.lines().nth(2).unwrap().ends_with("the first one"),
        "{table}"
    );
    let json = cli
        .json(&["templates", "versions", "list", "app", "-o", "json"])
        .await;
    let v = &json[1];
    for (field, want) in [
        ("name", "first"),
        ("template", "app"),
        ("message", "the first one"),
        ("created_by", "admin"),
        ("status", "succeeded"),
        ("error", ""),
    ] {
        assert_eq!(v[field], want, "{field}: {v}");
    }
    assert_eq!(
        (v["active"].as_bool(), v["archived"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        (v["activate"].as_bool(), json[0]["activate"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(v["workspaces"], 0);
    assert_eq!(v["id"].as_str().unwrap().len(), 36, "{v}");
    assert_eq!(v["import_job_id"].as_str().unwrap().len(), 36, "{v}");
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'), "{v}");

    // A workspace on the active version, one on v2 following the active
    // version.
    cli.ok(&["workspaces", "create", "ws1", "--template", "app", "--wait"])
        .await;
    cli.ok(&[
        "workspaces",
        "create",
        "ws2",
        "--template",
        "app",
        "--template-version",
        "v2",
        "--automatic-updates",
        "always",
        "--wait",
    ])
    .await;
    let (show, _) = cli.ok(&["workspaces", "show", "ws2"]).await;
    let id2 = json[0]["id"].as_str().unwrap();
    assert!(
        show.contains(&format!(
            "Template:    app version v2 ({id2}); outdated: `workspaces update` moves it to the active version"
        )),
        "{show}"
    );
    assert!(show.contains("Updates:     always"), "{show}");
    let (list, _) = cli.ok(&["workspaces", "list", "-c", "name,version"]).await;
    assert_eq!(
        rows(&list),
        [vec!["ws1", "first"], vec!["ws2", "v2", "(outdated)"]]
    );
    let (jobs, _) = cli.ok(&["jobs", "list", "-c", "type,version"]).await;
    assert_eq!(
        rows(&jobs),
        [
            ["workspace_build", "v2"],
            ["workspace_build", "first"],
            ["template_import", "v2"],
            ["template_import", "first"],
        ]
    );
    let jobs = cli.json(&["jobs", "list", "-o", "json"]).await;
    assert_eq!(jobs[0]["template_version_name"], "v2", "{jobs}");

    // Promote v2: ws1 is outdated now; `update` moves it, `autoupdate`
    // sets its policy.
    let (_, err) = cli
        .ok(&["templates", "versions", "promote", "app", "v2"])
        .await;
    assert_eq!(
        err.trim(),
        format!("Template \"app\": version v2 ({id2}) is active")
    );
    let ws1 = cli.json(&["workspaces", "show", "ws1", "-o", "json"]).await;
    assert_eq!(
        (
            &ws1["template_version_name"],
            &ws1["outdated"],
            &ws1["automatic_updates"]
        ),
        (
            &Value::from("first"),
            &Value::from(true),
            &Value::from("never")
        )
    );
    let (_, err) = cli.ok(&["workspaces", "autoupdate", "ws1", "always"]).await;
    assert_eq!(err.trim(), "Workspace \"ws1\": automatic updates always");
    let ws1 = cli.json(&["workspaces", "show", "ws1", "-o", "json"]).await;
    assert_eq!(ws1["automatic_updates"], "always");
    cli.ok(&["workspaces", "autoupdate", "ws1", "never"]).await;
    cli.ok(&["workspaces", "update", "ws1", "--wait"]).await;
    let ws1 = cli.json(&["workspaces", "show", "ws1", "-o", "json"]).await;
    assert_eq!(
        (
            &ws1["template_version_name"],
            &ws1["outdated"],
            &ws1["automatic_updates"]
        ),
        (
            &Value::from("v2"),
            &Value::from(false),
            &Value::from("never")
        )
    );
    assert_eq!(ws1["outputs"]["version"], "two", "{ws1}");
    // Already on the active version: nothing is built (as Coder's update).
    let (out, err) = cli.ok(&["workspaces", "update", "ws1"]).await;
    assert!(out.is_empty(), "no build job: {out}");
    assert!(
        err.contains("is on the template's active version (v2) already: nothing to do"),
        "{err}"
    );

    // Archive and unarchive `first`.
    let (_, err) = cli
        .ok(&["templates", "versions", "archive", "app", "first"])
        .await;
    assert_eq!(err.trim(), "Template \"app\": version first archived");
    let (table, _) = cli
        .ok(&["templates", "versions", "list", "app", "-c", "name"])
        .await;
    assert_eq!(rows(&table), [["v2"]]);
    let (table, _) = cli
        .ok(&[
            "templates",
            "versions",
            "list",
            "app",
            "--include-archived",
            "-c",
            "name,status",
        ])
        .await;
    assert_eq!(
        rows(&table),
        [
            vec!["v2", "succeeded"],
            vec!["first", "succeeded", "(archived)"]
        ]
    );
    let err = cli
        .fails(
            1,
            &[
                "workspaces",
                "create",
                "ws3",
                "--template",
                "app",
                "--template-version",
                "first",
            ],
        )
        .await;
    assert!(err.contains("version \"first\" is archived"), "{err}");
    cli.ok(&["templates", "versions", "unarchive", "app", "first"])
        .await;
    let (table, _) = cli
        .ok(&["templates", "versions", "list", "app", "-c", "name"])
        .await;
    assert_eq!(rows(&table), [["v2"], ["first"]]);
    d.stop().await.unwrap();
    coord.stop().await;
}
