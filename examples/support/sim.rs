//! Simulated daemons: the daemon protocol spoken by hand, so one process
//! holds hundreds of sessions (1,000 daemons need no 1,000 processes).
//! A session is what `provisionerd start` opens (Hello → Welcome, then
//! Acquire); a worker runs each offered job the quickest way the protocol
//! allows: AckJob, the empty UpdateJob that confirms ownership,
//! GetJobInput read to the end, FinishJob succeeded — no terraform, so
//! only the coordinator's own cost shows.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use provisionerd::grpc::{Credentials, MAX_MESSAGE_BYTES};
use provisionerd::proto::{
    self, CoordinatorMessage, DaemonMessage, DaemonState, coordinator_message::Msg as Out,
    daemon_message::Msg as In, job_input_chunk::Chunk,
    provisioner_daemon_client::ProvisionerDaemonClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::Streaming;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = ProvisionerDaemonClient<InterceptedService<Channel, Credentials>>;

/// The state a simulated build reports (what the no-op terraform writes).
pub const STATE: &[u8] =
    br#"{"version":4,"terraform_version":"1.15.0","serial":1,"lineage":"sim","outputs":{},"resources":[]}"#;

/// `ceil(sessions / per_channel)` HTTP/2 connections to `url`: sessions
/// share them as a pool of daemons behind one NAT would not, but a
/// connection per session would measure the kernel, not the coordinator.
pub async fn channels(url: &str, sessions: usize, per_channel: usize) -> Result<Vec<Channel>> {
    let n = sessions.div_ceil(per_channel.max(1)).max(1);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ch = Channel::from_shared(url.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connect to {url}"))?;
        out.push(ch);
    }
    Ok(out)
}

/// One simulated daemon's session.
pub struct Session {
    pub name: String,
    tx: mpsc::Sender<DaemonMessage>,
    inbound: Streaming<CoordinatorMessage>,
    /// For the unary calls, with this daemon's name on every request.
    pub client: Client,
}

impl Session {
    /// Opens a session as daemon `name` with provisioner key `key` and
    /// waits for its Welcome, `limit` at most.
    pub async fn open(
        channel: &Channel,
        key: &str,
        name: &str,
        limit: Duration,
    ) -> Result<Session> {
        tokio::time::timeout(limit, Self::open_now(channel, key, name))
            .await
            .with_context(|| format!("{name}: no Welcome within {limit:?}"))?
    }

    async fn open_now(channel: &Channel, key: &str, name: &str) -> Result<Session> {
        let creds = Credentials::bearer(key)
            .and_then(|c| c.with_daemon_name(name))
            .map_err(anyhow::Error::msg)?;
        let mut client = ProvisionerDaemonClient::with_interceptor(channel.clone(), creds)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        // Room for every message a session sends before it reads again.
        let (tx, rx) = mpsc::channel(4);
        let hello = In::Hello(proto::Hello {
            name: name.into(),
            version: "sim".into(),
            state: DaemonState::Idle as i32,
            current_job_id: String::new(),
        });
        tx.send(DaemonMessage { msg: Some(hello) }).await?;
        let inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .with_context(|| format!("{name}: open session"))?
            .into_inner();
        let mut s = Session {
            name: name.into(),
            tx,
            inbound,
            client,
        };
        match s.next().await? {
            Some(Out::Welcome(_)) => Ok(s),
            other => bail!("{name}: expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&self, msg: In) -> Result<()> {
        self.tx
            .send(DaemonMessage { msg: Some(msg) })
            .await
            .with_context(|| format!("{}: session closed", self.name))
    }

    /// The next pushed message; `None` once the coordinator ended the
    /// session.
    pub async fn next(&mut self) -> Result<Option<Out>> {
        let msg = self
            .inbound
            .message()
            .await
            .with_context(|| format!("{}: session stream", self.name))?;
        Ok(msg.and_then(|m| m.msg))
    }

    /// Runs an offered job at once: ack, confirm, fetch its input (checked
    /// against the offer's sizes), finish it succeeded with `STATE` for a
    /// build and no state for an import.
    pub async fn run(&mut self, offer: &proto::JobOffer) -> Result<()> {
        let job_id = offer.job_id.clone();
        // Every call about the job carries the offer's secret.
        let secret = offer.job_secret.clone();
        self.send(In::AckJob(proto::AckJob {
            job_id: job_id.clone(),
            job_secret: secret.clone(),
        }))
        .await?;
        let confirm = proto::UpdateJobRequest {
            job_id: job_id.clone(),
            logs: Vec::new(),
            job_secret: secret.clone(),
        };
        self.client
            .update_job(confirm)
            .await
            .with_context(|| format!("{}: confirm job {job_id}", self.name))?;
        let mut input = self
            .client
            .get_job_input(proto::GetJobInputRequest {
                job_id: job_id.clone(),
                job_secret: secret.clone(),
            })
            .await
            .with_context(|| format!("{}: fetch input of {job_id}", self.name))?
            .into_inner();
        let (mut archive, mut state) = (0u64, 0u64);
        while let Some(c) = input.message().await? {
            match c.chunk {
                Some(Chunk::Archive(b)) => archive += b.len() as u64,
                Some(Chunk::State(b)) => state += b.len() as u64,
                None => {}
            }
        }
        let want_state = offer.workspace_build.as_ref().map_or(0, |b| b.state_size);
        if (archive, state) != (offer.template_archive_size, want_state) {
            bail!(
                "{}: input of {job_id} is {archive}+{state} bytes, the offer said {}+{want_state}",
                self.name,
                offer.template_archive_size
            );
        }
        let header = proto::FinishJobRequest {
            job_id: job_id.clone(),
            outcome: proto::JobOutcome::Succeeded as i32,
            job_secret: secret,
            ..Default::default()
        };
        let build = offer.r#type == proto::JobType::WorkspaceBuild as i32;
        let parts = provisionerd::chunk::finish_job_parts(header, build.then_some(STATE));
        self.client
            .finish_job(tokio_stream::iter(parts))
            .await
            .with_context(|| format!("{}: finish {job_id}", self.name))?;
        Ok(())
    }
}

/// One job a worker ran: its id and when its offer arrived and its
/// FinishJob was answered.
pub struct Ran {
    pub job_id: String,
    pub offered: Instant,
    pub finished: Instant,
}

/// Acquires and runs jobs until `stop`, sending each run to `ran`. A
/// withdrawn offer (`CancelJob`) is an error: a simulated daemon answers
/// far within the offer timeout, so it means the coordinator fell behind.
pub async fn worker(mut s: Session, ran: mpsc::Sender<Ran>, stop: CancellationToken) -> Result<()> {
    loop {
        s.send(In::Acquire(proto::Acquire {})).await?;
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = s.next() => m?,
        };
        match msg {
            Some(Out::JobOffer(offer)) => {
                let offered = Instant::now();
                s.run(&offer).await?;
                let r = Ran {
                    job_id: offer.job_id,
                    offered,
                    finished: Instant::now(),
                };
                if ran.send(r).await.is_err() {
                    return Ok(());
                }
            }
            Some(Out::CancelJob(c)) => bail!("{}: offer of {} withdrawn", s.name, c.job_id),
            // Acquire again.
            Some(Out::AcquireCanceled(_) | Out::Welcome(_)) => {}
            None => bail!("{}: the coordinator ended the session", s.name),
        }
    }
}

/// Holds an idle session (Acquire sent) until `stop`; returns how many
/// offers it was pushed, which it never acknowledges (each goes back to
/// the queue when its offer times out).
pub async fn idle(mut s: Session, stop: CancellationToken) -> Result<u64> {
    let mut offers = 0;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(offers),
            m = s.next() => m?,
        };
        match msg {
            Some(Out::JobOffer(_)) => offers += 1,
            Some(_) => {}
            None => bail!("{}: the coordinator ended the session", s.name),
        }
    }
}
