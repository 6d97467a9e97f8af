//! A real PostgreSQL for tests: `scripts/postgres.sh` runs one in a temp
//! dir, stopped when the guard is dropped. With
//! `PROVISIONERD_TEST_DATABASE_URL` set, that server is used instead and
//! nothing is started; each test then works in a database of its own
//! ([`Postgres::fresh_database`]), since events and the leader lock are
//! per database.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::NoTls;

pub struct Postgres {
    /// The server's URL (its `postgres` database).
    pub url: String,
    /// The temp dir of the server this guard started; `None`: an
    /// external one.
    dir: Option<tempfile::TempDir>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres.sh")
}

fn run_script(cmd: &str, dir: &Path) -> String {
    let out = Command::new(script())
        .arg(cmd)
        .arg(dir)
        .output()
        .expect("run scripts/postgres.sh");
    assert!(
        out.status.success(),
        "scripts/postgres.sh {cmd} {}: {}\n{}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Postgres {
    /// The server to test against (see the module doc).
    pub fn start() -> Postgres {
        if let Ok(url) = std::env::var("PROVISIONERD_TEST_DATABASE_URL") {
            return Postgres { url, dir: None };
        }
        let dir = tempfile::Builder::new()
            .prefix("provisionerd-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let out = run_script("start", dir.path());
        let url = out
            .lines()
            .last()
            .expect("postgres.sh prints the URL")
            .to_string();
        Postgres {
            url,
            dir: Some(dir),
        }
    }

    /// Whether this guard runs the server (and so may restart it).
    pub fn owned(&self) -> bool {
        self.dir.is_some()
    }

    /// Restarts the server this guard started (fast shutdown: every
    /// connection is dropped), on the same port.
    pub fn restart(&self) {
        let dir = self
            .dir
            .as_ref()
            .expect("restart: not a server this test started");
        run_script("restart", dir.path());
    }

    /// A new, empty database on the server; its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to the test PostgreSQL");
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        drop(client);
        let _ = driver.await;
        let (base, _) = self.url.rsplit_once('/').expect("URL has a database path");
        format!("{base}/{name}")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            // Best effort: a failed stop must not hide the test's result.
            let _ = Command::new(script()).arg("stop").arg(dir.path()).output();
        }
    }
}
