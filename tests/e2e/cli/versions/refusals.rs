//! Refused version commands exit 1 with the coordinator's reason; bad
//! input exits 64; nothing changes.

use super::{rows, stack};
use crate::template;
use crate::versions::versioned;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_exit_1_with_the_reason_and_bad_input_64() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (coord, d, cli) = stack(root).await;
    let one = versioned(root, "one");
    let one = one.to_str().unwrap();
    cli.ok(&[
        "templates",
        "push",
        "app",
        "--dir",
        one,
        "--name",
        "first",
        "--wait",
    ])
    .await;
    let err = cli
        .fails(1, &["templates", "versions", "promote", "app", "nope"])
        .await;
    assert_eq!(
        err.trim(),
        "error: template \"app\" has no version \"nope\" (see `provisionerd templates versions list app`)"
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
                "nope",
            ],
        )
        .await;
    assert!(
        err.contains("create workspace \"ws3\": template \"app\" has no version \"nope\""),
        "{err}"
    );
    let broken = template(
        root,
        "broken",
        "resource \"terraform_data\" \"w\" {\n  input = var.nope\n}\n",
    );
    cli.fails(
        1,
        &[
            "templates",
            "push",
            "app",
            "--dir",
            broken.to_str().unwrap(),
            "--wait",
        ],
    )
    .await;
    let err = cli
        .fails(1, &["templates", "versions", "promote", "app", "v2"])
        .await;
    assert!(
        err.starts_with(
            "error: promote template \"app\" version \"v2\" was not imported (import job "
        ) && err.contains(" failed: terraform validate"),
        "{err}"
    );
    let err = cli
        .fails(1, &["templates", "versions", "archive", "app", "first"])
        .await;
    assert!(
        err.contains("it is the active version; promote another version first"),
        "{err}"
    );
    let err = cli
        .fails(
            1,
            &["templates", "push", "app", "--dir", one, "--name", "first"],
        )
        .await;
    assert!(err.contains("version name \"first\" is taken"), "{err}");
    let err = cli
        .fails(
            64,
            &[
                "templates",
                "push",
                "app",
                "--dir",
                one,
                "--name",
                "no good",
            ],
        )
        .await;
    assert!(
        err.contains("template version name \"no good\": ' ' is not allowed"),
        "{err}"
    );
    cli.fails(64, &["workspaces", "autoupdate", "ws1", "sometimes"])
        .await;
    let (table, _) = cli
        .ok(&["templates", "versions", "list", "app", "-c", "name,active"])
        .await;
    assert_eq!(
        rows(&table),
        [vec!["v2"], vec!["first", "yes"]],
        "nothing else changed"
    );
    d.stop().await.unwrap();
    coord.stop().await;
}
