//! A full cache dir (a small tmpfs, filled): the daemon says so on
//! /readyz and to the coordinator, takes no job meanwhile, and takes the
//! queued ones once space is back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{Stack, wait_for};
use crate::common::TIMEOUT;

/// A tmpfs mounted on a directory, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with the reason) when mounting is impossible here, e.g. not
    /// root or no CAP_SYS_ADMIN.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.raw_os_error(), Some(nix::libc::ENOSPC), "{e}");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_a_full_cache_dir_takes_no_job_until_space_is_back() {
    let s = Stack::new().await;
    let cache = s.cache();
    let _tmpfs = match Tmpfs::mount(&cache, "32m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a tmpfs for the cache dir: {why}");
            return;
        }
    };
    let (mut d, addr) = s.daemon(&[]).await;
    s.coord().wait_succeeded(&s.push("t").await).await;

    let filler = cache.join("filler");
    fill(&filler);
    let body = wait_for(addr, "/readyz", |st, b| {
        st == 503 && b.contains("not writable")
    })
    .await;
    assert!(body.contains("No space left on device"), "{body}");
    // The coordinator hears it before any job is queued.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let daemons = s.coord().daemons().await;
        if daemons.iter().any(|d| d.status == "not-ready") {
            break;
        }
        assert!(Instant::now() < deadline, "daemons: {daemons:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut jobs = Vec::new();
    for i in 0..4 {
        let ws = format!("w{i}");
        jobs.push(
            s.coord()
                .create_workspace(&ws, "t", "alice", &[("sleep", "0")])
                .await,
        );
    }
    // Today's failure took under 2s for five builds: none may be taken
    // while the disk stays full.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for job in &jobs {
        let j = s.coord().job(job).await;
        assert_eq!(j.status, "pending", "{j:?}\n{}", d.log_text());
    }
    assert_eq!(call_status(addr).await, 503);
    let log = d.log_text();
    assert_eq!(
        log.matches("not taking jobs: a readiness check fails")
            .count(),
        1,
        "logged once per change:\n{log}"
    );

    std::fs::remove_file(&filler).unwrap();
    for job in &jobs {
        s.coord().wait_succeeded(job).await;
    }
    wait_for(addr, "/readyz", |st, _| st == 200).await;
    assert!(
        d.log_text()
            .contains("readiness checks pass: taking jobs again")
    );
    d.signal(Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
}

async fn call_status(addr: std::net::SocketAddr) -> u16 {
    super::call(addr, "GET", "/readyz").await.0
}
