//! PostgreSQL for the tests that need it whatever engine the others use
//! (replicas): the server in `PROVISIONERD_TEST_DATABASE_URL`, or one this
//! test starts with `scripts/postgres.sh` and stops when done.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Server {
    pub url: String,
    /// Set when this test started the server (stopped on drop).
    dir: Option<PathBuf>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh")
}

impl Server {
    pub fn start() -> Server {
        if let Ok(url) = std::env::var("PROVISIONERD_TEST_DATABASE_URL")
            && !url.is_empty()
        {
            return Server { url, dir: None };
        }
        Self::start_own()
    }

    /// A server of this test's own, even when the suite has one: for a
    /// test that stops and restarts it.
    pub fn start_own() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("pg-")
            .tempdir()
            .unwrap()
            .keep();
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run scripts/postgres.sh");
        assert!(
            out.status.success(),
            "start PostgreSQL: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .last()
            .expect("postgres.sh prints the URL")
            .to_string();
        Server {
            url,
            dir: Some(dir),
        }
    }

    /// A database of its own for a test's replicas: a schema named after
    /// `dir` (as the tests' store does; see `testdb`).
    pub fn database(&self, dir: &Path) -> String {
        provisionerd::coordinator::store::testdb::url_on(&self.url, dir).unwrap()
    }

    /// Stops the server (this test's own; see [`Server::start_own`]).
    pub fn stop(&self) {
        self.run("stop");
    }

    /// Starts it again, on the same port.
    pub fn resume(&self) {
        self.run("start");
    }

    fn run(&self, cmd: &str) {
        let dir = self.dir.as_ref().expect("a server this test started");
        let out = Command::new(script()).arg(cmd).arg(dir).output().unwrap();
        assert!(
            out.status.success(),
            "postgres.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = Command::new(script()).arg("stop").arg(dir).output();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
