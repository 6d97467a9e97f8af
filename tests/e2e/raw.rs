//! A daemon session driven by hand with the generated client, message by
//! message: for tests that check exactly what the coordinator pushes,
//! accepts and refuses.

use provisionerd::grpc::{Credentials, MAX_MESSAGE_BYTES};
use provisionerd::proto::{
    self, CoordinatorMessage, DaemonMessage, DaemonState, coordinator_message::Msg as Out,
    daemon_message::Msg as In, provisioner_daemon_client::ProvisionerDaemonClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::common::{Coord, TIMEOUT};

/// A daemon client named `name`, with tonic's default limits (a test may
/// send what it likes, even an oversized message).
pub async fn client(coord: &Coord, key: &str, name: &str) -> Client {
    let channel = tokio::time::timeout(
        TIMEOUT,
        // Each call bounded too (a session's stream is not: only until
        // its answer starts).
        Channel::from_shared(coord.url.clone())
            .unwrap()
            .timeout(TIMEOUT)
            .connect(),
    )
    .await
    .expect("connect: timed out")
    .expect("connect");
    let creds = Credentials::bearer(key)
        .unwrap()
        .with_daemon_name(name)
        .unwrap();
    ProvisionerDaemonClient::with_interceptor(channel, creds)
}

pub type Client = ProvisionerDaemonClient<InterceptedService<Channel, Credentials>>;

/// One daemon's session, driven message by message.
pub struct RawDaemon {
    pub name: String,
    tx: mpsc::Sender<DaemonMessage>,
    pub inbound: Streaming<CoordinatorMessage>,
    /// For the unary calls (UpdateJob, FinishJob).
    pub client: Client,
    pub welcome: proto::Welcome,
    /// The job secret of each offer received through [`RawDaemon::claim`]
    /// or [`RawDaemon::offer`], by job id.
    pub secrets: std::collections::HashMap<String, String>,
}

impl RawDaemon {
    pub async fn open(coord: &Coord, key: &str, name: &str, state: DaemonState) -> RawDaemon {
        let mut client = client(coord, key, name)
            .await
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(16);
        let hello = In::Hello(proto::Hello {
            name: name.into(),
            version: "test".into(),
            state: state as i32,
            current_job_id: String::new(),
        });
        tx.send(DaemonMessage { msg: Some(hello) }).await.unwrap();
        let inbound = tokio::time::timeout(TIMEOUT, client.session(ReceiverStream::new(rx)))
            .await
            .expect("open session: timed out")
            .expect("open session")
            .into_inner();
        let mut d = RawDaemon {
            name: name.into(),
            tx,
            inbound,
            client,
            welcome: proto::Welcome::default(),
            secrets: Default::default(),
        };
        match d.next().await {
            Out::Welcome(w) => d.welcome = w,
            other => panic!("expected Welcome, got {other:?}"),
        }
        d
    }

    pub async fn send(&self, msg: In) {
        self.tx
            .send(DaemonMessage { msg: Some(msg) })
            .await
            .unwrap();
    }

    /// The next pushed message.
    pub async fn next(&mut self) -> Out {
        let msg = tokio::time::timeout(TIMEOUT, self.inbound.message())
            .await
            .unwrap_or_else(|_| panic!("{}: nothing pushed within {TIMEOUT:?}", self.name))
            .expect("session stream")
            .expect("session still open");
        msg.msg.expect("a message")
    }

    /// The secret of `job`'s offer to this daemon (empty: none seen).
    pub fn secret(&self, job: &str) -> String {
        self.secrets.get(job).cloned().unwrap_or_default()
    }

    /// The next pushed message, which must be an offer; its secret is kept.
    pub async fn offer(&mut self) -> proto::JobOffer {
        match self.next().await {
            Out::JobOffer(offer) => {
                let secret = offer.job_secret.clone();
                self.secrets.insert(offer.job_id.clone(), secret);
                offer
            }
            other => panic!("{}: expected an offer, got {other:?}", self.name),
        }
    }

    /// AckJob for `job`, with the secret of its offer.
    pub async fn ack(&self, job: &str) {
        self.send(In::AckJob(proto::AckJob {
            job_id: job.into(),
            job_secret: self.secret(job),
        }))
        .await;
    }

    /// An empty UpdateJob for `job`, with the secret of its offer.
    pub async fn update(&mut self, job: &str) -> Result<proto::UpdateJobResponse, tonic::Status> {
        let req = proto::UpdateJobRequest {
            job_id: job.into(),
            logs: Vec::new(),
            job_secret: self.secret(job),
        };
        self.client.update_job(req).await.map(|r| r.into_inner())
    }
}

impl RawDaemon {
    /// Takes the next job the coordinator offers: Acquire, the offer, AckJob
    /// and the ownership confirmation. Returns the offer.
    pub async fn claim(&mut self) -> proto::JobOffer {
        self.send(In::Acquire(proto::Acquire {})).await;
        let offer = self.offer().await;
        self.ack(&offer.job_id).await;
        self.update(&offer.job_id)
            .await
            .unwrap_or_else(|e| panic!("{}: confirm {}: {e}", self.name, offer.job_id));
        offer
    }

    /// FinishJob: the header (given the secret of the job's offer unless
    /// it has one), then the state in chunks.
    pub async fn finish(
        &mut self,
        mut header: proto::FinishJobRequest,
        state: Option<&[u8]>,
    ) -> Result<(), tonic::Status> {
        if header.job_secret.is_empty() {
            header.job_secret = self.secret(&header.job_id);
        }
        finish(&mut self.client, header, state).await
    }
}

/// FinishJob on any client: the header, then the state in chunks.
pub async fn finish(
    client: &mut Client,
    header: proto::FinishJobRequest,
    state: Option<&[u8]>,
) -> Result<(), tonic::Status> {
    let parts = provisionerd::chunk::finish_job_parts(header, state);
    client
        .finish_job(tokio_stream::iter(parts))
        .await
        .map(|_| ())
}
