//! The `ProvisionerDaemon` service: sessions, job updates, job results.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::Hub;
use super::auth;
use super::error::CoordError;
use super::store::{KeyRow, Report};
use super::transfer;
use crate::proto::provisioner_daemon_server::ProvisionerDaemon;
use crate::proto::{
    self, CoordinatorMessage, DaemonMessage, coordinator_message::Msg as Out,
    daemon_message::Msg as In,
};

type Outbound = mpsc::Sender<Result<CoordinatorMessage, Status>>;

pub struct DaemonApi {
    pub hub: Arc<Hub>,
    /// `--max-state-bytes`.
    pub max_state_bytes: u64,
    /// `--handshake-timeout`: the longest a session waits for its Hello.
    pub hello_timeout: std::time::Duration,
}

/// A connected daemon, as the hub tracks it for pushes and disconnects.
pub struct SessionHandle {
    pub name: String,
    pub key_name: String,
    /// Cancelled to end the session (its key was deleted).
    pub end: CancellationToken,
    /// The session's outbound queue, for pushes (`CancelJob`).
    pub tx: Outbound,
}

/// Who is on the other end of a session.
struct Peer {
    daemon_id: String,
    name: String,
    key: KeyRow,
}

impl DaemonApi {
    /// The calling daemon: its key (from the bearer credential) and name.
    fn caller<T>(&self, req: &Request<T>) -> Result<(KeyRow, String), CoordError> {
        let key = auth::check_key(&self.hub.store, req)?;
        let name = req
            .metadata()
            .get(crate::grpc::DAEMON_NAME_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                CoordError::Invalid(format!(
                    "daemon call: the {} header naming the calling daemon is missing",
                    crate::grpc::DAEMON_NAME_HEADER
                ))
            })?
            .to_string();
        Ok((key, name))
    }
}

#[tonic::async_trait]
impl ProvisionerDaemon for DaemonApi {
    type SessionStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

    async fn session(
        &self,
        req: Request<Streaming<DaemonMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let key = auth::check_key(&self.hub.store, &req)?;
        let mut inbound = req.into_inner();
        // A session holds a stream and a task: one that never says who it
        // is must not hold them forever.
        let first = tokio::time::timeout(self.hello_timeout, inbound.next())
            .await
            .map_err(|_| {
                CoordError::DeadlineExceeded(format!(
                    "session: no Hello within {} of opening the session (--handshake-timeout)",
                    humantime::format_duration(self.hello_timeout)
                ))
            })?;
        let hello = match first {
            Some(Ok(DaemonMessage {
                msg: Some(In::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "session: first message must be Hello",
                ));
            }
        };
        crate::tags::check_name("register daemon: daemon", &hello.name)
            .map_err(Status::invalid_argument)?;
        super::bounds::hello(&hello)?;
        let report = Report::new(hello.state, &hello.current_job_id);
        let daemon = self
            .hub
            .store
            .connect_daemon(&hello.name, &key, &hello.version, &report)?;
        tracing::info!(daemon = %daemon.name, key = %key.name, version = %hello.version, "daemon connected");
        let (tx, rx) = mpsc::channel(32);
        let welcome = CoordinatorMessage {
            msg: Some(Out::Welcome(proto::Welcome {
                daemon_id: daemon.id.clone(),
                tags: key.tags.clone().into_iter().collect(),
                key_name: key.name.clone(),
                job_lease_ms: u64::try_from(self.hub.job_lease.as_millis()).unwrap_or(u64::MAX),
            })),
        };
        // The channel is fresh, so this cannot block.
        let _ = tx.send(Ok(welcome)).await;
        let end = CancellationToken::new();
        self.hub.register_session(
            daemon.id.clone(),
            SessionHandle {
                name: daemon.name.clone(),
                key_name: key.name.clone(),
                end: end.clone(),
                tx: tx.clone(),
            },
        );
        // A job canceled while its daemon was reconnecting: tell it now
        // rather than at its next heartbeat.
        match self.hub.store.canceling_jobs(&daemon.id) {
            Ok(ids) => {
                for id in ids {
                    self.hub.push_cancel(&daemon.id, &id);
                }
            }
            Err(e) => tracing::error!(error = %e, daemon = %daemon.name, "list canceling jobs"),
        }
        let hub = self.hub.clone();
        let peer = Peer {
            daemon_id: daemon.id,
            name: daemon.name,
            key,
        };
        self.hub.tasks.spawn(async move {
            serve_session(&hub, &peer, report.takes_jobs(), inbound, tx, end).await;
            hub.end_session(&peer.daemon_id).await;
            tracing::info!(daemon = %peer.name, "daemon disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_job(
        &self,
        req: Request<proto::UpdateJobRequest>,
    ) -> Result<Response<proto::UpdateJobResponse>, Status> {
        let (key, name) = self.caller(&req)?;
        let req = req.into_inner();
        super::bounds::log_lines(&req.job_id, &req.logs)?;
        // On the worker: the heartbeat's small batch costs less than the
        // hop to the blocking pool (see ARCHITECTURE.md, "Store").
        let (stored_seq, canceled) = self.hub.store.append_logs(
            &req.job_id,
            &name,
            &key.name,
            &req.job_secret,
            &req.logs,
        )?;
        if !req.logs.is_empty() {
            self.hub.job_changed(&req.job_id);
        }
        Ok(Response::new(proto::UpdateJobResponse {
            stored_seq,
            canceled,
        }))
    }

    type GetJobInputStream =
        Pin<Box<dyn Stream<Item = Result<proto::JobInputChunk, Status>> + Send>>;

    async fn get_job_input(
        &self,
        req: Request<proto::GetJobInputRequest>,
    ) -> Result<Response<Self::GetJobInputStream>, Status> {
        let (key, name) = self.caller(&req)?;
        let proto::GetJobInputRequest { job_id, job_secret } = req.into_inner();
        let (archive, state) = {
            let (id, name, key) = (job_id.clone(), name.clone(), key.name.clone());
            // Sizes are stored with the blobs: reading them costs no blob.
            let bytes = self.hub.store.input_size(&job_id, &job_secret)?;
            (self.hub.store)
                .call_sized(bytes, move |s| s.job_input(&id, &name, &key, &job_secret))
                .await?
        };
        tracing::info!(job = %job_id, daemon = %name, archive = archive.len(), state = state.len(), "job input fetched");
        let chunks = transfer::input_chunks(archive, state).map(Ok);
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn finish_job(
        &self,
        req: Request<Streaming<proto::FinishJobPart>>,
    ) -> Result<Response<proto::FinishJobResponse>, Status> {
        let (key, name) = self.caller(&req)?;
        // The caller must own the job before any chunk is read; the whole
        // state is read and checked before anything is stored.
        let store = &self.hub.store;
        // The header's job id and secret, for each chunk's check.
        let job = std::sync::OnceLock::new();
        let admit = |h: &proto::FinishJobRequest| {
            let _ = job.set((h.job_id.clone(), h.job_secret.clone()));
            store.reporting(&h.job_id, &name, &key.name, &h.job_secret)
        };
        // Each chunk renews the lease (a large state on a slow link).
        let tick = || match job.get() {
            Some((id, secret)) => store.reporting(id, &name, &key.name, secret),
            None => Ok(()),
        };
        // Only a stream the daemon ended is a report: a broken or canceled
        // one stores nothing (see `stream_end`), and the daemon retries.
        let read = transfer::read_finish(req.into_inner(), self.max_state_bytes, admit, tick).await;
        let (req, state) = read.inspect_err(|e| {
            tracing::warn!(daemon = %name, error = %e, "job report not taken: nothing stored");
        })?;
        let secret = req.job_secret.clone();
        let report = transfer::job_report(&super::bounds::finish(req)?)?;
        let taken = {
            let (name, key, report) = (name.clone(), key.name.clone(), report.clone());
            (self.hub.store)
                .call_sized(state.len() as u64, move |s| {
                    s.finish(&name, &key, &secret, &report, &state)
                })
                .await
        };
        taken.inspect_err(|e| {
            tracing::warn!(daemon = %name, error = %e, "job report refused");
        })?;
        let outcome = report.outcome.as_str();
        tracing::info!(job = %report.job_id, daemon = %name, outcome, "job finished");
        self.hub.job_changed(&report.job_id);
        Ok(Response::new(proto::FinishJobResponse {}))
    }
}

/// How often a session's messages update its daemon's `last_seen_at`.
const TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn acquire_canceled() -> CoordinatorMessage {
    CoordinatorMessage {
        msg: Some(Out::AcquireCanceled(proto::AcquireCanceled {})),
    }
}

/// Reads one daemon's session until it ends. `takes_jobs` turns false for
/// good once the daemon says it is draining or canceling.
async fn serve_session(
    hub: &Hub,
    peer: &Peer,
    mut takes_jobs: bool,
    mut inbound: Streaming<DaemonMessage>,
    tx: Outbound,
    end: CancellationToken,
) {
    let daemon_id = peer.daemon_id.as_str();
    // Hello just set it.
    let mut touched = std::time::Instant::now();
    loop {
        let msg = tokio::select! {
            // The last word is not waited for: a daemon that does not read
            // its queue would hold the session, and with it the shutdown
            // (which waits for open streams), until the connection died.
            // Ending the task ends the stream either way.
            _ = hub.stopping.cancelled() => {
                let _ = tx.try_send(Err(Status::unavailable("coordinator shutting down")));
                return;
            }
            _ = end.cancelled() => {
                let _ = tx.try_send(Err(Status::unauthenticated(format!(
                    "provisioner key {:?} was deleted", peer.key.name
                ))));
                return;
            }
            msg = inbound.next() => msg,
        };
        let msg = match msg {
            Some(Ok(DaemonMessage { msg: Some(m) })) => m,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return,
        };
        // `last_seen_at` is shown to a second; one write per message (two
        // or three per job) would be most of a fast job's store writes.
        if touched.elapsed() >= TOUCH_EVERY {
            touched = std::time::Instant::now();
            let _ = hub.store.touch_daemon(daemon_id);
        }
        match msg {
            In::Hello(_) => {}
            In::StateUpdate(update) => {
                let report = Report::new(update.state, &update.current_job_id);
                if let Err(e) = hub.store.report_daemon_state(daemon_id, &report) {
                    tracing::error!(daemon = %peer.name, error = %e, "record daemon state");
                }
                if report.state == Some(proto::DaemonState::NotReady) {
                    // The daemon withdraws its Acquire and ignores an offer
                    // that crossed this report: that offer goes back to the
                    // queue, for another daemon.
                    tracing::info!(daemon = %peer.name, "daemon not ready: takes no jobs until it is");
                    if hub.dispatcher.unwait(daemon_id.to_string()).await {
                        let _ = tx.send(Ok(acquire_canceled())).await;
                    }
                    if let Err(e) = hub.store.release_offers(daemon_id) {
                        tracing::error!(daemon = %peer.name, error = %e, "release offers");
                    }
                    hub.kick();
                }
                if takes_jobs && !report.takes_jobs() {
                    takes_jobs = false;
                    let state = report
                        .state
                        .map_or_else(|| "unreported".to_string(), |s| format!("{s:?}"));
                    tracing::info!(daemon = %peer.name, %state, "daemon takes no more jobs");
                    // Its pending Acquire is void; answered as a withdrawal
                    // so a daemon waiting for the answer is not left hanging.
                    // An offer already pushed stays the daemon's to run.
                    if hub.dispatcher.unwait(daemon_id.to_string()).await {
                        let _ = tx.send(Ok(acquire_canceled())).await;
                    }
                }
            }
            In::Acquire(_) if !takes_jobs => {
                tracing::warn!(daemon = %peer.name, "acquire from a draining or canceling daemon: refused");
                let _ = tx.send(Ok(acquire_canceled())).await;
            }
            In::Acquire(_) => {
                hub.dispatcher
                    .wait(daemon_id.to_string(), peer.key.tags.clone(), tx.clone())
                    .await;
            }
            In::CancelAcquire(_) => {
                // If the dispatcher already pushed an offer, the daemon
                // receives that instead and must ack or drop it.
                if hub.dispatcher.unwait(daemon_id.to_string()).await {
                    let _ = tx.send(Ok(acquire_canceled())).await;
                }
            }
            In::AckJob(ack) => {
                if let Err(e) = hub.store.ack(
                    &ack.job_id,
                    daemon_id,
                    &peer.name,
                    &peer.key.name,
                    &ack.job_secret,
                ) {
                    // Withdrawn or canceled meanwhile: tell the daemon not
                    // to run it.
                    tracing::warn!(job = %ack.job_id, error = %e, "ack refused");
                    let msg = CoordinatorMessage {
                        msg: Some(Out::CancelJob(proto::CancelJob { job_id: ack.job_id })),
                    };
                    let _ = tx.send(Ok(msg)).await;
                } else {
                    tracing::info!(job = %ack.job_id, daemon = %peer.name, "job acknowledged");
                    hub.job_changed(&ack.job_id);
                }
            }
        }
    }
}
