//! Daemon lifecycle through the real binary: signals, exit codes.

use std::time::Duration;

use crate::common::procs;
use crate::common::{Coord, TIMEOUT};

#[tokio::test]
async fn unknown_key_exits_77_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let mut d = procs::start(
        &coord.url,
        "pdk_not-a-real-key",
        "d1",
        &tmp.path().join("c1"),
        &[],
    );
    assert_eq!(d.exit_code(TIMEOUT).await, 77);
    let log = d.log_text();
    assert!(log.contains("credentials refused"), "{log}");
    coord.stop().await;
}

#[tokio::test]
async fn deleting_the_key_disconnects_the_daemon_which_exits_77() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let mut d = procs::start(&coord.url, &key, "d1", &tmp.path().join("c1"), &[]);
    crate::common::wait_connected(&coord, 1).await;
    coord
        .admin()
        .await
        .delete_key(provisionerd::proto::DeleteKeyRequest { name: "k".into() })
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(d.exit_code(TIMEOUT).await, 77, "{}", d.log_text());
    assert!(started.elapsed() < Duration::from_secs(15));
    coord.stop().await;
}
