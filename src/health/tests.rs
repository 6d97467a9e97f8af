use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;

use super::*;

/// A raw HTTP/1.0 request; the answer's status line and body.
async fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    call_with(addr, method, path, "").await
}

async fn call_with(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("{method} {path} HTTP/1.0\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), talk)
        .await
        .expect("the endpoint answers within 30s");
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

#[tokio::test]
async fn serves_metrics_health_readiness_and_drain() {
    let mut registry = Registry::with_prefix("t");
    let jobs = Counter::<u64>::default();
    registry.register("jobs", "Jobs run", jobs.clone());
    jobs.inc_by(3);
    let ready = Arc::new(AtomicBool::new(false));
    let drains = Arc::new(AtomicUsize::new(0));
    let (r, d) = (ready.clone(), drains.clone());
    let endpoint = Endpoint {
        registry: Arc::new(registry),
        freshen: None,
        ready: Arc::new(move || {
            if r.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(vec!["not connected to the coordinator".into()])
            }
        }),
        drain: Some(Arc::new(move || {
            d.fetch_add(1, Ordering::SeqCst);
            "draining".into()
        })),
    };
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, endpoint, stop.clone()));

    let (status, body) = call(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("t_jobs_total 3"), "{body}");
    assert_eq!(call(addr, "GET", "/healthz").await, (200, "ok\n".into()));
    assert_eq!(
        call(addr, "GET", "/readyz").await,
        (
            503,
            "not ready:\n- not connected to the coordinator\n".into()
        )
    );
    ready.store(true, Ordering::SeqCst);
    assert_eq!(call(addr, "GET", "/readyz").await, (200, "ready\n".into()));
    assert_eq!(call(addr, "GET", "/drain").await.0, 405);
    let from_page = call_with(addr, "POST", "/drain", "Origin: https://evil.example\r\n").await;
    assert_eq!(from_page.0, 403, "{from_page:?}");
    assert_eq!(drains.load(Ordering::SeqCst), 0);
    assert_eq!(
        call(addr, "POST", "/drain").await,
        (202, "draining\n".into())
    );
    assert_eq!(drains.load(Ordering::SeqCst), 1);

    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("stops when told")
        .unwrap();
}

#[tokio::test]
async fn a_taken_port_is_a_startup_error_naming_the_flag() {
    let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = first.local_addr().unwrap();
    let err = bind(addr).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("listen on --metrics-address {addr}: ")),
        "{err}"
    );
}
