//! A daemon driven by hand with the generated client: it takes one job
//! (Acquire, offer, AckJob, confirming UpdateJob) and then makes whatever
//! job calls a test wants, well-formed or not.

use provisionerd::grpc::Credentials;
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

pub type Client = ProvisionerDaemonClient<InterceptedService<Channel, Credentials>>;

pub struct RawDaemon {
    /// Kept open: the session ending would send the job back to the queue.
    _tx: mpsc::Sender<DaemonMessage>,
    _inbound: Streaming<CoordinatorMessage>,
    pub client: Client,
}

/// A daemon client named `name`, with tonic's default limits (the raw
/// client sends what a test makes, even an oversized message).
pub async fn client(coord: &Coord, key: &str, name: &str) -> Client {
    let channel = tokio::time::timeout(
        TIMEOUT,
        Channel::from_shared(coord.url.clone()).unwrap().connect(),
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

impl RawDaemon {
    /// Opens a session as `name` and takes the next job offered: returns
    /// the daemon and the offer, the job confirmed as its own.
    pub async fn take_job(coord: &Coord, key: &str, name: &str) -> (RawDaemon, proto::JobOffer) {
        let mut client = client(coord, key, name).await;
        let (tx, rx) = mpsc::channel(16);
        let send = |msg| DaemonMessage { msg: Some(msg) };
        tx.send(send(In::Hello(proto::Hello {
            name: name.into(),
            version: "test".into(),
            state: DaemonState::Idle as i32,
            current_job_id: String::new(),
        })))
        .await
        .unwrap();
        let mut inbound = tokio::time::timeout(TIMEOUT, client.session(ReceiverStream::new(rx)))
            .await
            .expect("open session: timed out")
            .expect("open session")
            .into_inner();
        tx.send(send(In::Acquire(proto::Acquire {}))).await.unwrap();
        let offer = loop {
            let msg = tokio::time::timeout(TIMEOUT, inbound.message())
                .await
                .expect("no offer in time")
                .expect("session stream")
                .expect("session open");
            match msg.msg {
                Some(Out::JobOffer(o)) => break o,
                Some(Out::Welcome(_)) => continue,
                other => panic!("expected an offer, got {other:?}"),
            }
        };
        tx.send(send(In::AckJob(proto::AckJob {
            job_id: offer.job_id.clone(),
        })))
        .await
        .unwrap();
        let confirm = proto::UpdateJobRequest {
            job_id: offer.job_id.clone(),
            logs: Vec::new(),
        };
        client.update_job(confirm).await.expect("confirm the job");
        let d = RawDaemon {
            _tx: tx,
            _inbound: inbound,
            client,
        };
        (d, offer)
    }
}
