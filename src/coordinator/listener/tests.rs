use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tonic::transport::server::Connected;

use super::backoff::Backoff;
use super::*;

#[test]
fn backoff_doubles_to_one_second_and_restarts_after_an_accept() {
    let mut b = Backoff::default();
    let emfile = io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
    let delays: Vec<_> = (0..12).map(|_| b.failed(&emfile)).collect();
    assert_eq!(delays[0], Duration::from_millis(5));
    assert_eq!(delays[1], Duration::from_millis(10));
    assert!(delays.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
    b.succeeded();
    assert_eq!(b.failed(&emfile), Duration::from_millis(5));
}

#[test]
fn the_cap_leaves_room_under_the_open_file_limit() {
    assert_eq!(effective_cap(2048, None), 2048);
    assert_eq!(effective_cap(2048, Some(1_048_576)), 2048);
    assert_eq!(effective_cap(2048, Some(256)), 192);
    assert_eq!(effective_cap(2048, Some(1024)), 768);
    assert_eq!(effective_cap(100, Some(256)), 100);
    assert_eq!(effective_cap(10, Some(20)), 1);
}

#[test]
fn beyond_the_cap_the_oldest_unproven_connection_goes() {
    let mut u = Unproven::new(2);
    let a = u.admit();
    let b = u.admit();
    assert_eq!(u.count(), 2);
    let c = u.admit();
    assert!(!a.is_unproven(), "the oldest was evicted");
    assert!(b.is_unproven() && c.is_unproven());
    assert_eq!(u.count(), 2);
    // A proven connection is never evicted, and no longer counts.
    let info = ConnInfo::for_test(b.clone());
    info.prove();
    assert_eq!(u.count(), 1);
    let d = u.admit();
    assert_eq!(u.count(), 2);
    assert!(!b.is_unproven() && !b.evict(), "proven stays proven");
    assert!(c.is_unproven() && d.is_unproven());
}

#[test]
fn the_queue_of_proven_entries_is_swept() {
    let mut u = Unproven::new(4);
    for _ in 0..1000 {
        let s = u.admit();
        ConnInfo::for_test(s).prove();
    }
    assert!(u.queue.len() <= 8, "queue holds {} entries", u.queue.len());
    assert_eq!(u.count(), 0);
}

/// A loopback pair: the server side wrapped as the accept loop does.
async fn pair(u: &mut Unproven, timeout: Duration) -> (Conn, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (server, remote) = l.accept().await.unwrap();
    (Conn::new(server, remote, u.admit(), timeout), client)
}

#[tokio::test]
async fn an_unproven_connection_fails_at_its_deadline_and_stops_counting() {
    let mut u = Unproven::new(8);
    // Before the connection exists: its deadline starts inside `pair`.
    let started = std::time::Instant::now();
    let (mut conn, mut client) = pair(&mut u, Duration::from_millis(300)).await;
    let mut buf = [0u8; 16];
    let err = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("read ends at the deadline")
        .expect_err("read fails");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(err.to_string().contains("handshake timeout"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!(u.count(), 0);
    assert!(conn.write(b"x").await.is_err(), "writes fail too");
    drop(conn);
    let n = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
        .await
        .expect("client sees the close")
        .unwrap();
    assert_eq!(n, 0, "EOF");
}

#[tokio::test]
async fn a_proven_connection_outlives_the_deadline() {
    let mut u = Unproven::new(8);
    let (mut conn, mut client) = pair(&mut u, Duration::from_millis(200)).await;
    conn.connect_info().prove();
    assert_eq!(u.count(), 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut buf))
        .await
        .expect("read")
        .expect("a proven connection keeps working");
    assert_eq!(&buf, b"ping");
}

#[tokio::test]
async fn eviction_wakes_a_connection_waiting_to_read() {
    let mut u = Unproven::new(1);
    let (mut conn, _client) = pair(&mut u, Duration::from_secs(600)).await;
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        conn.read(&mut buf).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _newer = u.admit();
    let err = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the evicted connection's read ends")
        .unwrap()
        .expect_err("read fails");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
}
