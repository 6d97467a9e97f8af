//! A TCP proxy a test can cut and heal: a network partition between a
//! coordinator and its database, without root or netns. It runs on a
//! runtime of its own: the coordinator under test may block a worker of
//! the test's runtime on a database call that needs the proxy to answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    pub addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    /// Cancelled on a cut: every open connection is dropped.
    conns: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    /// Forwards connections on a free port to `target`.
    pub async fn start(target: std::net::SocketAddr) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (c, k, s) = (cut.clone(), conns.clone(), stop.clone());
        let serve = async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = s.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                if c.load(Ordering::SeqCst) {
                    // Cut: the connection goes nowhere.
                    drop(inbound);
                    continue;
                }
                let token = k.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        };
        std::thread::spawn(move || rt.block_on(serve));
        Proxy {
            addr,
            cut,
            conns,
            stop,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut t = self.conns.lock().unwrap();
        t.cancel();
        *t = CancellationToken::new();
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.conns.lock().unwrap().cancel();
    }
}
