//! Test harness: a real coordinator on port 0 and real daemons, in this
//! process, running real terraform (installed by scripts/install-terraform.sh).
#![allow(dead_code)]

pub mod pg;
pub mod procs;
pub mod proxy;

#[path = "../tools/mod.rs"]
mod tools;
pub use tools::{coder_cli_config, terraform};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use provisionerd::coordinator::{Coordinator, ServeConfig};
use provisionerd::daemon::{self, DaemonConfig, DaemonError, Shutdown};
use provisionerd::grpc::{Credentials, MAX_MESSAGE_BYTES};
use provisionerd::proto::{self, admin_client::AdminClient};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn examples_template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates/basic")
}

pub type Admin = AdminClient<InterceptedService<Channel, Credentials>>;

pub struct Coord {
    pub url: String,
    pub data_dir: PathBuf,
    pub token: String,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<()>,
}

impl Coord {
    pub async fn start(data_dir: &Path) -> Coord {
        Self::start_with_lease(data_dir, Duration::from_secs(60)).await
    }

    pub async fn start_with_lease(data_dir: &Path, job_lease: Duration) -> Coord {
        Self::start_at(data_dir, "127.0.0.1:0".parse().unwrap(), job_lease).await
    }

    /// Starts on a given address (a restart on the port daemons know).
    pub async fn start_at(
        data_dir: &Path,
        listen: std::net::SocketAddr,
        job_lease: Duration,
    ) -> Coord {
        Self::start_config(ServeConfig {
            listen,
            job_lease,
            ..Self::config(data_dir)
        })
        .await
    }

    /// A replica serving the PostgreSQL database at `database_url`, with
    /// the admin token `token` (`--admin-token-file`; also left in its data
    /// dir, where [`Coord::start_config`] reads it).
    pub async fn start_replica(data_dir: &Path, database_url: &str, token: &str) -> Coord {
        std::fs::create_dir_all(data_dir).unwrap();
        let token_file = data_dir.join("admin-token");
        std::fs::write(&token_file, token).unwrap();
        Self::start_config(ServeConfig {
            database_url: Some(database_url.to_string()),
            database_pool: 8,
            admin_token_file: Some(token_file),
            ..Self::config(data_dir)
        })
        .await
    }

    /// Starts with archive limits of the test's choosing.
    pub async fn start_with_limits(
        data_dir: &Path,
        limits: provisionerd::archive::Limits,
    ) -> Coord {
        Self::start_config(ServeConfig {
            archive_limits: limits,
            ..Self::config(data_dir)
        })
        .await
    }

    /// The tests' coordinator settings for `data_dir`: a free port, a 60 s
    /// lease, the tests' engine (see `testdb`).
    pub fn config(data_dir: &Path) -> ServeConfig {
        ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_path_buf(),
            allow_new_database: false,
            job_lease: Duration::from_secs(60),
            tls: None,
            archive_limits: Default::default(),
            max_state_bytes: provisionerd::coordinator::DEFAULT_MAX_STATE_BYTES,
            metrics_address: None,
            prebuild_reconcile_interval: None,
            prebuild_failure_hard_limit: 3,
            offer_timeout: provisionerd::coordinator::DEFAULT_OFFER_TIMEOUT,
            connections: Default::default(),
            database_url: provisionerd::coordinator::store::testdb::url_for(data_dir).unwrap(),
            database_pool: 16,
            admin_token_file: None,
        }
    }

    pub async fn start_config(cfg: ServeConfig) -> Coord {
        let data_dir = cfg.data_dir.clone();
        let coordinator = Coordinator::bind(cfg).await.expect("bind coordinator");
        let url = format!("http://{}", coordinator.local_addr());
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let handle = tokio::spawn(async move {
            coordinator.run(s).await.expect("coordinator run");
        });
        let token = std::fs::read_to_string(data_dir.join("admin-token"))
            .expect("admin token")
            .trim()
            .to_string();
        Coord {
            url,
            data_dir: data_dir.to_path_buf(),
            token,
            shutdown,
            handle,
        }
    }

    /// A handle on a coordinator running elsewhere (a `provisionerd serve`
    /// process, see [`procs::serve`]); `stop` does not stop it.
    pub fn attach(url: &str, data_dir: &Path, token: &str) -> Coord {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        Coord {
            url: url.to_string(),
            data_dir: data_dir.to_path_buf(),
            token: token.to_string(),
            shutdown,
            handle: tokio::spawn(async move { s.cancelled().await }),
        }
    }

    /// Stops the coordinator; it must finish within a few seconds even with
    /// daemons connected (their sessions are ended, not waited for).
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("coordinator stops within 10s")
            .expect("coordinator task");
    }

    pub async fn admin(&self) -> Admin {
        // Every call is bounded: a wedged coordinator fails the test
        // instead of hanging it.
        let endpoint = Channel::from_shared(self.url.clone())
            .unwrap()
            .timeout(TIMEOUT);
        let channel = tokio::time::timeout(TIMEOUT, endpoint.connect())
            .await
            .expect("connect admin: timed out")
            .expect("connect admin");
        AdminClient::with_interceptor(channel, Credentials::bearer(&self.token).unwrap())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub async fn create_key(&self, name: &str, tags: &[(&str, &str)]) -> String {
        let tags: HashMap<String, String> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.admin()
            .await
            .create_key(proto::CreateKeyRequest {
                name: name.into(),
                tags,
            })
            .await
            .expect("create key")
            .into_inner()
            .secret
    }

    /// Pushes a template directory and returns the import job id.
    pub async fn push(&self, name: &str, dir: &Path, tags: &[(&str, &str)]) -> String {
        let archive = provisionerd::archive::tar_dir(dir).expect("tar template");
        let provisioner_tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let header = proto::PushTemplateRequest {
            name: name.into(),
            provisioner_tags,
            variables: HashMap::new(),
            ..Default::default()
        };
        self.push_archive(header, &archive)
            .await
            .expect("push template")
    }

    /// Pushes `archive` in chunks under `header` (its size and hash filled
    /// in); returns the import job id or the coordinator's refusal.
    pub async fn push_archive(
        &self,
        header: proto::PushTemplateRequest,
        archive: &[u8],
    ) -> Result<String, tonic::Status> {
        let parts = provisionerd::chunk::push_template_parts(header, archive);
        self.admin()
            .await
            .push_template(tokio_stream::iter(parts))
            .await
            .map(|r| r.into_inner().job_id)
    }

    pub async fn create_workspace(
        &self,
        name: &str,
        template: &str,
        owner: &str,
        vars: &[(&str, &str)],
    ) -> String {
        let variables = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.admin()
            .await
            .create_workspace(proto::CreateWorkspaceRequest {
                name: name.into(),
                template: template.into(),
                owner: owner.into(),
                variables,
                ..Default::default()
            })
            .await
            .expect("create workspace")
            .into_inner()
            .job_id
    }

    pub async fn build(&self, name: &str, t: proto::Transition) -> String {
        self.admin()
            .await
            .build_workspace(proto::BuildWorkspaceRequest {
                name: name.into(),
                transition: t as i32,
                ..Default::default()
            })
            .await
            .expect("build workspace")
            .into_inner()
            .job_id
    }

    pub async fn job(&self, id: &str) -> proto::Job {
        self.admin()
            .await
            .get_job(proto::GetJobRequest { id: id.into() })
            .await
            .expect("get job")
            .into_inner()
    }

    /// Waits until the job has finished (any final status) and returns it.
    pub async fn wait_job(&self, id: &str) -> proto::Job {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let job = self.job(id).await;
            if matches!(job.status.as_str(), "succeeded" | "failed" | "canceled") {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} still {} after {TIMEOUT:?}",
                job.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_succeeded(&self, id: &str) -> proto::Job {
        let job = self.wait_job(id).await;
        if job.status != "succeeded" {
            let logs = self.logs(id).await;
            panic!(
                "job {id} {}: {}\n{}",
                job.status,
                job.error,
                logs.iter()
                    .map(|l| l.output.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        job
    }

    /// The state the coordinator stores for a live workspace, read from its
    /// database (what no API returns whole).
    pub fn stored_state(&self, workspace: &str) -> Option<Vec<u8>> {
        use provisionerd::coordinator::store::{db as pg, testdb};
        if let Some(url) = testdb::url_for(&self.data_dir).unwrap() {
            let pool = pg::Pool::new(&url, 1).unwrap();
            let conn = pool.get().expect("open the coordinator's database");
            return conn
                .query_row(
                    "SELECT state FROM workspaces WHERE name = ?1 AND deleted = 0",
                    [workspace],
                    |r| r.get(0),
                )
                .expect("read workspace state");
        }
        let db = rusqlite::Connection::open_with_flags(
            self.data_dir.join("provisionerd.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the coordinator's database");
        db.query_row(
            "SELECT state FROM workspaces WHERE name = ?1 AND deleted = 0",
            [workspace],
            |r| r.get(0),
        )
        .expect("read workspace state")
    }

    pub async fn logs(&self, id: &str) -> Vec<proto::LogLine> {
        use tokio_stream::StreamExt;
        let read = async {
            let mut s = self
                .admin()
                .await
                .stream_job_logs(proto::StreamJobLogsRequest {
                    job_id: id.into(),
                    after_seq: 0,
                    follow: false,
                })
                .await
                .expect("stream logs")
                .into_inner();
            let mut out = Vec::new();
            while let Some(l) = s.next().await {
                out.push(l.expect("log line"));
            }
            out
        };
        tokio::time::timeout(TIMEOUT, read)
            .await
            .expect("read job logs: timed out")
    }

    pub async fn workspace(&self, name: &str) -> Result<proto::Workspace, tonic::Status> {
        self.admin()
            .await
            .get_workspace(proto::GetWorkspaceRequest { name: name.into() })
            .await
            .map(|r| r.into_inner())
    }

    /// Runs the real `provisionerd` admin CLI against this coordinator,
    /// with no stdin; whatever it exits with.
    pub async fn run_cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisionerd"));
        cmd.args(args)
            .env("PROVISIONERD_URL", &self.url)
            .env("PROVISIONERD_TOKEN", &self.token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        tokio::time::timeout(TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("provisionerd {args:?}: still running after {TIMEOUT:?}"))
            .expect("run provisionerd")
    }

    pub async fn daemons(&self) -> Vec<proto::Daemon> {
        self.admin()
            .await
            .list_daemons(proto::ListDaemonsRequest::default())
            .await
            .expect("list daemons")
            .into_inner()
            .daemons
    }
}

pub struct Daemon {
    pub name: String,
    pub shutdown: Shutdown,
    pub handle: JoinHandle<Result<(), DaemonError>>,
    pub cache_dir: PathBuf,
}

impl Daemon {
    /// `url` may list several, comma-separated (as `--url` does).
    pub fn config(url: &str, key: &str, name: &str, cache_dir: &Path) -> DaemonConfig {
        DaemonConfig {
            urls: url.split(',').map(str::to_string).collect(),
            key: key.into(),
            tls: Default::default(),
            name: name.to_string(),
            name_conflict_timeout: Duration::from_secs(60),
            cache_dir: cache_dir.to_path_buf(),
            terraform_path: terraform(),
            cancel_grace: Duration::from_secs(10),
            drain_timeout: None,
            archive_limits: Default::default(),
            ops: Default::default(),
        }
    }

    pub fn start(url: &str, key: &str, name: &str, cache_dir: &Path) -> Daemon {
        Self::start_with(Self::config(url, key, name, cache_dir))
    }

    pub fn start_with(cfg: DaemonConfig) -> Daemon {
        let shutdown = Shutdown::new();
        let name = cfg.name.clone();
        let cache_dir = cfg.cache_dir.clone();
        let handle = tokio::spawn(daemon::run(cfg, shutdown.clone()));
        Daemon {
            name,
            shutdown,
            handle,
            cache_dir,
        }
    }

    /// Drains the daemon and waits for it to exit.
    pub async fn stop(self) -> Result<(), DaemonError> {
        self.shutdown.drain.cancel();
        tokio::time::timeout(TIMEOUT, self.handle)
            .await
            .expect("daemon exits after drain")
            .expect("daemon task")
    }
}

/// Waits until `n` daemons are connected.
/// Waits until `daemons list` shows daemon `name` as `want` says.
pub async fn wait_daemon(coord: &Coord, name: &str, want: impl Fn(&proto::Daemon) -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let daemons = coord.daemons().await;
        if daemons.iter().any(|d| d.name == name && want(d)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon {name}: never as wanted: {daemons:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_connected(coord: &Coord, n: usize) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let up = coord
            .daemons()
            .await
            .iter()
            .filter(|d| d.status != "offline")
            .count();
        if up >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {up} of {n} daemons connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A coordinator with one untagged key and daemon `d1`, and template
/// `template` pushed from `dir` and imported.
pub async fn stack(root: &Path, template: &str, dir: &Path) -> (Coord, Daemon) {
    let coord = Coord::start(&root.join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &root.join("c1"));
    coord
        .wait_succeeded(&coord.push(template, dir, &[]).await)
        .await;
    (coord, d)
}
