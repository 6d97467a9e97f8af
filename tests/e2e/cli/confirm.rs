//! Destructive commands ask a person at a terminal (answered on a real
//! pseudo-terminal here), and refuse a caller without one unless it passes
//! -y: nothing is deleted on a refusal or a "no".

use super::{pty, run, stderr, stdout};
use crate::common::{Coord, TIMEOUT, stack};
use crate::{QUICK, template};

fn env(coord: &Coord) -> [(&'static str, String); 2] {
    [
        ("PROVISIONERD_URL", coord.url.clone()),
        ("PROVISIONERD_TOKEN", coord.token.clone()),
    ]
}

async fn latest(coord: &Coord, workspace: &str) -> String {
    let w = coord.workspace(workspace).await;
    w.expect("the workspace is kept").latest_job_id
}

async fn key_names(coord: &Coord) -> Vec<String> {
    let keys = coord
        .admin()
        .await
        .list_keys(provisionerd::proto::ListKeysRequest::default())
        .await
        .expect("list keys")
        .into_inner()
        .keys;
    keys.into_iter().map(|k| k.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_delete_asks_on_a_terminal_and_refuses_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    coord.create_key("a", &[]).await;
    coord.create_key("b", &[]).await;
    let env = env(&coord);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // No terminal (stdin is /dev/null) and no -y: refused, nothing deleted.
    let out = run(&["keys", "delete", "a"], &env).await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "delete provisioner key \"a\": refused without confirmation: there is no terminal"
        ),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("pass -y/--yes"), "{}", stderr(&out));
    assert_eq!(key_names(&coord).await, ["a", "b"]);

    // On a terminal: the question, then "n" keeps the key (exit 1).
    let mut t = pty::spawn(&["keys", "delete", "a"], &env);
    t.wait_for("[y/N]").await;
    t.answer("n");
    let (code, _, screen) = t.finish().await;
    assert!(
        screen.contains("Delete provisioner key \"a\"? Daemons using it are disconnected. [y/N]"),
        "{screen}"
    );
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains("delete provisioner key \"a\": not confirmed; nothing was done"),
        "{screen}"
    );
    assert_eq!(key_names(&coord).await, ["a", "b"]);

    // "y" deletes it.
    let mut t = pty::spawn(&["keys", "delete", "a"], &env);
    t.wait_for("[y/N]").await;
    t.answer("y");
    let (code, _, screen) = t.finish().await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("Deleted provisioner key \"a\""), "{screen}");
    assert_eq!(key_names(&coord).await, ["b"]);

    // -y: no question, even without a terminal.
    let out = run(&["keys", "delete", "-y", "b"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(key_names(&coord).await.is_empty());
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workspaces_delete_asks_on_a_terminal_and_refuses_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = template(tmp.path(), "quick", QUICK);
    let (coord, d) = stack(tmp.path(), "quick", &dir).await;
    let built = coord.create_workspace("ws", "quick", "alice", &[]).await;
    coord.wait_succeeded(&built).await;
    let env = env(&coord);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let out = run(&["workspaces", "delete", "ws"], &env).await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("delete workspace \"ws\": refused without confirmation"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        latest(&coord, "ws").await,
        built,
        "no destroy build was queued"
    );

    let mut t = pty::spawn(&["workspaces", "delete", "ws"], &env);
    t.wait_for("[y/N]").await;
    t.answer("no");
    let (code, _, screen) = t.finish().await;
    assert!(
        screen.contains("Delete workspace \"ws\"? Its resources are destroyed. [y/N]"),
        "{screen}"
    );
    assert_eq!(code, 1, "{screen}");
    assert_eq!(
        latest(&coord, "ws").await,
        built,
        "no destroy build was queued"
    );

    let mut t = pty::spawn(&["workspaces", "delete", "ws", "--wait"], &env);
    t.wait_for("[y/N]").await;
    t.answer("yes");
    let (code, _, screen) = t.finish().await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("destroy build job"), "{screen}");
    let gone = coord.workspace("ws").await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{gone}");

    // A missing workspace is reported, not asked about.
    let out = tokio::time::timeout(TIMEOUT, run(&["workspaces", "delete", "ws"], &env))
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(!stderr(&out).contains("confirmation"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    d.stop().await.unwrap();
    coord.stop().await;
}
