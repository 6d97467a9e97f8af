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
use super::store::KeyRow;
use crate::proto::provisioner_daemon_server::ProvisionerDaemon;
use crate::proto::{
    self, CoordinatorMessage, DaemonMessage, coordinator_message::Msg as Out,
    daemon_message::Msg as In,
};

type Outbound = mpsc::Sender<Result<CoordinatorMessage, Status>>;

pub struct DaemonApi {
    pub hub: Arc<Hub>,
}

/// A connected daemon, as the hub tracks it for pushes and disconnects.
pub struct SessionHandle {
    pub name: String,
    pub key_name: String,
    /// Cancelled to end the session (its key was deleted).
    pub end: CancellationToken,
}

impl DaemonApi {
    /// The calling daemon: its key (from the bearer credential) and name.
    fn caller<T>(&self, req: &Request<T>) -> Result<(KeyRow, String), CoordError> {
        let key = auth::check_key(&self.hub.store, req.metadata())?;
        let name = req
            .metadata()
            .get(crate::grpc::DAEMON_NAME_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                CoordError::Invalid(format!(
                    "job call: missing the {} header naming the daemon",
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
        let key = auth::check_key(&self.hub.store, req.metadata())?;
        let mut inbound = req.into_inner();
        let hello = match inbound.next().await {
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
        let daemon = self
            .hub
            .store
            .connect_daemon(&hello.name, &key, &hello.version)?;
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
            },
        );
        let hub = self.hub.clone();
        tokio::spawn(async move {
            serve_session(&hub, &daemon.id, &daemon.name, &key, inbound, tx, end).await;
            hub.end_session(&daemon.id).await;
            tracing::info!(daemon = %daemon.name, "daemon disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_job(
        &self,
        req: Request<proto::UpdateJobRequest>,
    ) -> Result<Response<proto::UpdateJobResponse>, Status> {
        let (key, name) = self.caller(&req)?;
        let req = req.into_inner();
        let (stored_seq, canceled) =
            self.hub
                .store
                .append_logs(&req.job_id, &name, &key.name, &req.logs)?;
        if !req.logs.is_empty() {
            self.hub.job_changed(&req.job_id);
        }
        Ok(Response::new(proto::UpdateJobResponse {
            stored_seq,
            canceled,
        }))
    }

    async fn finish_job(
        &self,
        req: Request<proto::FinishJobRequest>,
    ) -> Result<Response<proto::FinishJobResponse>, Status> {
        let (key, name) = self.caller(&req)?;
        let req = req.into_inner();
        self.hub.store.finish(&name, &key.name, &req)?;
        let outcome = proto::JobOutcome::try_from(req.outcome)
            .map(|o| o.as_str_name())
            .unwrap_or("unknown");
        tracing::info!(job = %req.job_id, daemon = %name, outcome, "job finished");
        self.hub.job_changed(&req.job_id);
        Ok(Response::new(proto::FinishJobResponse {}))
    }
}

/// Reads one daemon's session until it ends.
async fn serve_session(
    hub: &Hub,
    daemon_id: &str,
    daemon_name: &str,
    key: &KeyRow,
    mut inbound: Streaming<DaemonMessage>,
    tx: Outbound,
    end: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = hub.stopping.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("coordinator shutting down"))).await;
                return;
            }
            _ = end.cancelled() => {
                let _ = tx.send(Err(Status::unauthenticated(format!(
                    "provisioner key {:?} was deleted", key.name
                )))).await;
                return;
            }
            msg = inbound.next() => msg,
        };
        let msg = match msg {
            Some(Ok(DaemonMessage { msg: Some(m) })) => m,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return,
        };
        let _ = hub.store.touch_daemon(daemon_id);
        match msg {
            In::Hello(_) | In::StateUpdate(_) => {}
            In::Acquire(_) => {
                hub.dispatcher
                    .wait(daemon_id.to_string(), key.tags.clone(), tx.clone())
                    .await;
            }
            In::CancelAcquire(_) => {
                // If the dispatcher already pushed an offer, the daemon
                // receives that instead and must ack or drop it.
                if hub.dispatcher.unwait(daemon_id.to_string()).await {
                    let msg = CoordinatorMessage {
                        msg: Some(Out::AcquireCanceled(proto::AcquireCanceled {})),
                    };
                    let _ = tx.send(Ok(msg)).await;
                }
            }
            In::AckJob(ack) => {
                if let Err(e) = hub
                    .store
                    .ack(&ack.job_id, daemon_id, daemon_name, &key.name)
                {
                    // Withdrawn meanwhile: tell the daemon not to run it.
                    tracing::warn!(job = %ack.job_id, error = %e, "ack refused");
                    let msg = CoordinatorMessage {
                        msg: Some(Out::CancelJob(proto::CancelJob { job_id: ack.job_id })),
                    };
                    let _ = tx.send(Ok(msg)).await;
                } else {
                    tracing::info!(job = %ack.job_id, daemon = %daemon_name, "job acknowledged");
                    hub.job_changed(&ack.job_id);
                }
            }
        }
    }
}
