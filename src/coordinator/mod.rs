//! `provisionerd serve`: the coordinator. Keys, templates, workspaces, the
//! job queue with tag routing, logs — and the two gRPC services daemons and
//! the CLI talk to.
//!
//! State ownership: the SQLite [`store::Store`] holds everything durable;
//! the [`dispatch::Dispatcher`] task owns the set of daemons waiting for a
//! job; the [`Hub`] holds the live sessions (for pushes) and a broadcast of
//! job changes (for `jobs logs --follow`). Changes reach the Hub as
//! [`cluster`] events, so that with several replicas on one database every
//! replica's Hub hears of them.

pub mod admin_api;
pub mod auth;
pub mod bounds;
pub mod claim;
pub mod cluster;
pub mod daemon_api;
pub mod dispatch;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod outputs;
pub mod paging;
pub mod prebuilds;
pub mod routing;
pub mod startup;
pub mod store;
pub mod stream_end;
pub mod templates;
pub mod transfer;
pub mod workspaces;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tonic::service::interceptor::InterceptedService;

use crate::proto::admin_server::AdminServer;
use crate::proto::provisioner_daemon_server::ProvisionerDaemonServer;
use daemon_api::SessionHandle;
use dispatch::Dispatcher;
use error::{CoordError, Result};
use startup::StartError;
use store::Store;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `--allow-new-database`: a used data dir whose database is missing or
    /// empty starts with a new one instead of being refused.
    pub allow_new_database: bool,
    /// A running job whose daemon sends no update for this long is failed.
    pub job_lease: Duration,
    /// Certificate, key and optional client CA; `None` serves plain HTTP/2.
    pub tls: Option<crate::grpc::tls::ServerTls>,
    /// Bounds a pushed template archive must stay within.
    pub archive_limits: crate::archive::Limits,
    /// Largest terraform state taken from a daemon.
    pub max_state_bytes: u64,
    /// `--metrics-address`: /metrics, /healthz, /readyz; `None`: off.
    pub metrics_address: Option<SocketAddr>,
    /// `--prebuild-reconcile-interval`; `None`: no prebuild reconciler.
    pub prebuild_reconcile_interval: Option<Duration>,
    /// `--prebuild-failure-hard-limit` (0: off).
    pub prebuild_failure_hard_limit: u32,
    /// `--offer-timeout`: an offer not acknowledged for this long goes back
    /// to the queue.
    pub offer_timeout: Duration,
    /// `--handshake-timeout`, `--max-unauthenticated-connections`.
    pub connections: listener::Limits,
    /// `--database-url[-file]`: PostgreSQL; `None`: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// `--database-pool`: PostgreSQL connections at most.
    pub database_pool: usize,
    /// `--admin-token-file`: the admin token, provisioned at start.
    pub admin_token_file: Option<PathBuf>,
}

/// `--offer-timeout` unless set.
pub const DEFAULT_OFFER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `run` waits for its tasks to end once serving has stopped.
const TASKS_STOP: Duration = Duration::from_secs(10);

/// `--max-state-bytes` unless set.
pub const DEFAULT_MAX_STATE_BYTES: u64 = 256 * 1024 * 1024;

/// Shared by both services.
pub struct Hub {
    pub store: Arc<Store>,
    pub dispatcher: Dispatcher,
    /// Job ids whose logs or status changed.
    pub changes: broadcast::Sender<String>,
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// `--job-lease`, told to daemons in their Welcome.
    pub job_lease: Duration,
    /// Cancelled when the coordinator shuts down: sessions end with
    /// UNAVAILABLE so daemons reconnect to whoever serves next, instead of
    /// holding a stream to a process that no longer hands out work.
    pub stopping: CancellationToken,
    /// The prebuild reconciler's shared state (interval, wake-up, errors).
    pub prebuilds: prebuilds::Prebuilds,
    /// Every task the coordinator spawns (dispatcher, sessions, log
    /// followers, reaper, reconciler, metrics): `run` waits for them before
    /// it lets go of the data dir, so nothing of this coordinator touches
    /// the store once another may hold it.
    pub tasks: TaskTracker,
    /// Claim durations, observed as claims happen (see `claim.rs`).
    pub claim_durations: claim::ClaimDurations,
    /// Events to every replica's Hub, and leadership.
    pub cluster: cluster::Cluster,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub")
    }
}

impl Hub {
    /// The job's logs or status changed: log followers on every replica
    /// re-read.
    pub fn job_changed(&self, job_id: &str) {
        self.cluster.publish(cluster::Event::JobChanged {
            job_id: job_id.to_string(),
        });
    }

    /// A job with `tags` was enqueued: waiting daemons that may take it,
    /// on every replica, try.
    pub fn job_queued(&self, tags: &crate::tags::Tags) {
        self.cluster
            .publish(cluster::Event::JobQueued { tags: tags.clone() });
    }

    /// Jobs went back to the queue: every waiting daemon, on every
    /// replica, tries.
    pub fn kick(&self) {
        self.cluster.publish(cluster::Event::Kick);
    }

    /// Tells the daemon running `job_id` to interrupt it, on whichever
    /// replica holds its session. If none can (no session, or its
    /// outbound buffer is full), it learns from its next UpdateJob.
    pub fn cancel_on_daemon(&self, daemon_id: &str, job_id: &str) {
        self.cluster.publish(cluster::Event::CancelJob {
            daemon_id: daemon_id.to_string(),
            job_id: job_id.to_string(),
        });
    }

    fn register_session(&self, daemon_id: String, handle: SessionHandle) {
        self.lock_sessions().insert(daemon_id, handle);
    }

    async fn end_session(&self, daemon_id: &str) {
        self.lock_sessions().remove(daemon_id);
        // Forgotten by the dispatcher first, so it cannot offer it a job
        // after its offers were returned to the queue below.
        self.dispatcher.session_ended(daemon_id.to_string()).await;
        if let Err(e) = self.store.disconnect_daemon(daemon_id) {
            tracing::error!(error = %e, "record daemon disconnect");
        }
        // Offers it never acknowledged are back in the queue, for daemons
        // on any replica.
        self.kick();
    }

    /// Tells the daemon running `job_id` to interrupt it, on its session
    /// on this replica, now. Returns false when it could not be told (no session, or its
    /// outbound buffer is full); it then learns from its next UpdateJob,
    /// whose answer says `canceled`.
    pub fn push_cancel(&self, daemon_id: &str, job_id: &str) -> bool {
        let sessions = self.lock_sessions();
        let Some(s) = sessions.get(daemon_id) else {
            return false;
        };
        let msg = crate::proto::CoordinatorMessage {
            msg: Some(crate::proto::coordinator_message::Msg::CancelJob(
                crate::proto::CancelJob {
                    job_id: job_id.to_string(),
                },
            )),
        };
        // Never wait under the sessions lock (or for a slow daemon at all).
        s.tx.try_send(Ok(msg)).is_ok()
    }

    /// Ends every session (their daemons reconnect).
    pub fn end_all_sessions(&self) {
        for s in self.lock_sessions().values() {
            s.end.cancel();
        }
    }

    /// Ends the sessions of every daemon using `key_name`, on every
    /// replica.
    pub fn disconnect_key(&self, key_name: &str) {
        self.cluster.publish(cluster::Event::KeyDeleted {
            key: key_name.to_string(),
        });
    }

    /// Ends the sessions on this replica of every daemon using `key_name`.
    fn end_sessions_of_key(&self, key_name: &str) {
        for s in self.lock_sessions().values() {
            if s.key_name == key_name {
                tracing::info!(daemon = %s.name, key = key_name, "key deleted: disconnecting daemon");
                s.end.cancel();
            }
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A bound, not yet serving coordinator. It holds the data dir's lock
/// until [`Coordinator::run`] returns (or it is dropped unrun).
pub struct Coordinator {
    listener: TcpListener,
    /// The operations endpoint's listener (`--metrics-address`).
    ops: Option<TcpListener>,
    dispatch_latency: prometheus_client::metrics::histogram::Histogram,
    hub: Arc<Hub>,
    cfg: ServeConfig,
    lock: crate::dirlock::DirLock,
}

impl Coordinator {
    /// Locks the data dir, binds the listeners (port 0 picks a free port;
    /// see [`Self::local_addr`]), and only then checks and opens the store
    /// and creates the admin token on first start (see [`startup`]): a
    /// second coordinator, or one whose port is taken, touches nothing.
    pub async fn bind(cfg: ServeConfig) -> Result<Coordinator, StartError> {
        let lock = startup::lock(&cfg.data_dir)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| CoordError::Internal(format!("listen on {}: {e}", cfg.listen)))?;
        // Scripts that start the coordinator on port 0 read the URL here.
        let bound = listener
            .local_addr()
            .map_err(|e| CoordError::Internal(format!("listen on {}: {e}", cfg.listen)))?;
        let ops = match cfg.metrics_address {
            Some(addr) => Some(
                crate::health::bind(addr)
                    .await
                    .map_err(|e| CoordError::Internal(e.to_string()))?,
            ),
            None => None,
        };
        let store = Arc::new(match &cfg.database_url {
            Some(url) => startup::open_postgres(&cfg.data_dir, url, cfg.database_pool)?,
            None => startup::open(&cfg.data_dir, cfg.allow_new_database)?,
        });
        if let Some(file) = &cfg.admin_token_file {
            auth::provision_admin_token(&store, file)?;
        } else {
            startup::ensure_admin_token(&store, &cfg.data_dir)?;
        }
        let address_file = cfg.data_dir.join("address");
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        std::fs::write(&address_file, format!("{scheme}://{bound}\n"))
            .map_err(|e| CoordError::Internal(format!("write {}: {e}", address_file.display())))?;
        let stopping = CancellationToken::new();
        let tasks = TaskTracker::new();
        let dispatch_latency = metrics::dispatch_latency();
        let dispatcher = Dispatcher::spawn(
            &tasks,
            store.clone(),
            stopping.clone(),
            dispatch_latency.clone(),
            cfg.offer_timeout,
        );
        let (changes, _) = broadcast::channel(1024);
        let (cluster, inbox) = cluster::Cluster::start(
            &cluster::Options {
                database_url: cfg.database_url.clone(),
                election_every: election_every(&cfg),
            },
            &tasks,
            stopping.clone(),
        )
        .await
        .map_err(|e| match e {
            cluster::ClusterError::Url(_) => StartError::Refused(e.to_string()),
            cluster::ClusterError::Connect(_) => CoordError::Internal(e.to_string()).into(),
        })?;
        let hub = Arc::new(Hub {
            store,
            dispatcher,
            changes,
            sessions: Mutex::new(HashMap::new()),
            job_lease: cfg.job_lease,
            stopping,
            prebuilds: prebuilds::Prebuilds::new(
                cfg.prebuild_reconcile_interval,
                cfg.prebuild_failure_hard_limit,
            ),
            tasks,
            claim_durations: claim::claim_durations(),
            cluster,
        });
        (hub.tasks).spawn(cluster::apply_events(
            hub.clone(),
            inbox,
            hub.stopping.clone(),
        ));
        if hub.cluster.is_distributed() {
            (hub.tasks).spawn(cluster::relay_returned(hub.clone(), hub.stopping.clone()));
        }
        Ok(Coordinator {
            listener,
            ops,
            dispatch_latency,
            hub,
            cfg,
            lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.cfg.listen)
    }

    /// The operations endpoint's address, when `--metrics-address` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        // Ends the background tasks however serving ends (also on an error).
        let shutdown = shutdown.child_token();
        let addr = self.local_addr();
        self.hub.tasks.spawn(reap_lost_jobs(
            self.hub.clone(),
            self.cfg.job_lease,
            shutdown.clone(),
        ));
        if self.hub.store.replica().is_some() {
            (self.hub.tasks).spawn(replica_heartbeat(self.hub.clone(), shutdown.clone()));
        }
        // Jobs left pending by a previous run are offered as soon as
        // daemons wait.
        self.hub.dispatcher.kick();
        if let Some(interval) = self.cfg.prebuild_reconcile_interval {
            (self.hub.tasks).spawn(prebuilds::run(self.hub.clone(), interval, shutdown.clone()));
        }
        if let Some(listener) = self.ops {
            let ops_addr = listener
                .local_addr()
                .map_err(|e| CoordError::Internal(format!("listen on --metrics-address: {e}")))?;
            let ready = metrics::readiness(self.hub.clone(), shutdown.clone()).await;
            let stopping = self.hub.stopping.clone();
            let (registry, freshen) = metrics::registry(
                self.hub.clone(),
                self.dispatch_latency.clone(),
                shutdown.clone(),
            )
            .await;
            let endpoint = crate::health::Endpoint {
                registry: Arc::new(registry),
                freshen: Some(freshen),
                ready: Arc::new(move || ready.check(&stopping)),
                drain: None,
            };
            tracing::info!(addr = %ops_addr, "operations endpoint listening");
            (self.hub.tasks).spawn(crate::health::serve(listener, endpoint, shutdown.clone()));
        }
        let daemon = ProvisionerDaemonServer::new(daemon_api::DaemonApi {
            hub: self.hub.clone(),
            max_state_bytes: self.cfg.max_state_bytes,
            hello_timeout: self.cfg.connections.handshake_timeout,
        })
        .max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::grpc::MAX_MESSAGE_BYTES);
        let admin = AdminServer::new(admin_api::AdminApi {
            hub: self.hub.clone(),
            archive_limits: self.cfg.archive_limits,
        })
        .max_decoding_message_size(crate::grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::grpc::MAX_MESSAGE_BYTES);
        let mutual = self.cfg.tls.as_ref().is_some_and(|t| t.mutual());
        let gate = move |req| auth::client_cert(req, mutual);
        // A canceled FinishJob or PushTemplate stream must not look ended.
        let daemon = stream_end::CancelIsAbort(InterceptedService::new(daemon, gate));
        let admin = stream_end::CancelIsAbort(InterceptedService::new(admin, gate));
        let mut server = tonic::transport::Server::builder();
        match &self.cfg.tls {
            Some(tls) => {
                server = server.tls_config(tls.config()).map_err(|e| {
                    CoordError::Internal(format!(
                        "set up TLS on {addr}: {}",
                        crate::grpc::error_chain(&e)
                    ))
                })?;
            }
            None => tracing::warn!("serving plain HTTP/2 without TLS; use --tls-cert/--tls-key"),
        }
        let tls = match &self.cfg.tls {
            Some(t) if t.mutual() => "mutual (client certificates required)",
            Some(_) => "on",
            None => "off",
        };
        tracing::info!(%addr, tls, "coordinator listening");
        let incoming = listener::incoming(
            &self.hub.tasks,
            self.listener,
            self.cfg.connections,
            shutdown.clone(),
        );
        // Graceful shutdown waits for open streams; sessions only end when
        // told to.
        let stopping = self.hub.stopping.clone();
        let stop_sessions = shutdown.clone();
        self.hub.tasks.spawn(async move {
            stop_sessions.cancelled().await;
            stopping.cancel();
        });
        let result = server
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .add_service(daemon)
            .add_service(admin)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        self.hub.stopping.cancel();
        self.hub.tasks.close();
        if tokio::time::timeout(TASKS_STOP, self.hub.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.hub.tasks.len(),
                "stop coordinator: tasks still running after {TASKS_STOP:?}; releasing the data dir anyway"
            );
        }
        // The other replicas need not wait for this one's heartbeat to
        // expire (its sessions have ended).
        let store = self.hub.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.leave()).await {
            tracing::warn!(error = %e, "stop coordinator: leave the replica list");
        }
        // Only now may another coordinator take the data dir.
        drop(self.lock);
        result.map_err(|e| CoordError::Internal(format!("serve on {addr}: {e}")))
    }
}

/// Keeps this replica's heartbeat (PostgreSQL; see `store/replicas.rs`):
/// clears replicas found dead and offers their jobs again; ends every
/// session here when this replica was itself declared dead (cut off from
/// the database for longer than the replica timeout), since their daemons
/// were marked disconnected.
async fn replica_heartbeat(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(store::replicas::HEARTBEAT_EVERY) => {}
        }
        let store = hub.store.clone();
        let beat = match store::blocking(move || store.heartbeat()).await {
            Ok(b) => b,
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "replica heartbeat: database unreachable");
                }
                failing = true;
                continue;
            }
        };
        if failing {
            tracing::info!("replica heartbeat: database reachable again");
            failing = false;
            // Before the reaper can judge them: daemons could not report
            // while the database was away.
            let store = hub.store.clone();
            if let Err(e) = store::blocking(move || store.extend_leases()).await {
                tracing::warn!(error = %e, "extend running jobs' leases after the outage");
            }
        }
        if beat.revived {
            tracing::warn!(
                "replica heartbeat: this replica was declared dead by the others; ending its \
                 sessions so its daemons register again"
            );
            hub.end_all_sessions();
        }
        if beat.buried > 0 {
            tracing::warn!(
                replicas = beat.buried,
                offers = beat.offers_returned,
                "replica heartbeat: replicas gone silent; their daemons may register elsewhere"
            );
            // Their offers are back in the queue: for daemons on any replica.
            hub.kick();
        }
    }
}

/// How often the lease reaper looks for lost jobs.
fn reap_period(lease: Duration) -> Duration {
    (lease / 4).max(Duration::from_millis(100))
}

/// How often leadership is tried: at most the shorter of the leader's
/// loops' intervals, so a new leader takes over within one of them.
fn election_every(cfg: &ServeConfig) -> Duration {
    let mut every = cluster::DEFAULT_ELECTION_EVERY.min(reap_period(cfg.job_lease));
    if let Some(reconcile) = cfg.prebuild_reconcile_interval {
        every = every.min(reconcile);
    }
    every.max(Duration::from_millis(100))
}

/// Fails running jobs whose daemon stopped sending updates. Runs on the
/// leader only: one replica at a time fails lost jobs.
async fn reap_lost_jobs(hub: Arc<Hub>, lease: Duration, shutdown: CancellationToken) {
    let period = reap_period(lease);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if !hub.cluster.is_leader() {
            continue;
        }
        let cutoff = store::now_ms() - lease.as_millis() as i64;
        match hub.store.fail_lost_jobs(cutoff) {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(job = %id, "job failed: daemon lost");
                    hub.job_changed(&id);
                }
            }
            Err(e) => tracing::error!(error = %e, "reap lost jobs"),
        }
    }
}
