//! The dispatcher against a real store, on tokio's paused clock: offers
//! expire by their timer, and a session holds one offer at a time.

use std::collections::BTreeMap;

use super::*;
use crate::coordinator::error::CoordError;
use crate::coordinator::store::{JobStatus, NewImport, Report};
use crate::proto::coordinator_message::Msg;

const TIMEOUT: Duration = Duration::from_secs(5);

type Inbox = mpsc::Receiver<Result<CoordinatorMessage, tonic::Status>>;

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    dispatcher: Dispatcher,
    _stop: tokio_util::sync::DropGuard,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::coordinator::store::testdb::open(dir.path()).unwrap());
    let stop = CancellationToken::new();
    let latency = crate::coordinator::metrics::dispatch_latency();
    let dispatcher = Dispatcher::spawn(
        &Default::default(),
        store.clone(),
        stop.clone(),
        latency,
        TIMEOUT,
    );
    Setup {
        _dir: dir,
        store,
        dispatcher,
        _stop: stop.drop_guard(),
    }
}

impl Setup {
    /// A pending untagged import job of template `name`.
    fn job(&self, name: &str) -> String {
        let none = BTreeMap::new();
        self.store
            .push_template(
                name,
                b"a",
                &Tags::new(),
                &none,
                "alice",
                &NewImport::default(),
            )
            .unwrap()
            .1
    }

    /// Daemon `name`'s id and its session's inbox, waiting for a job.
    async fn waiting(&self, name: &str) -> (String, Outbound, Inbox) {
        let key = match self.store.create_key("k", "h", &Tags::new()) {
            Ok(k) => k,
            Err(_) => self.store.key_by_hash("h").unwrap().unwrap(),
        };
        let id = self
            .store
            .connect_daemon(name, &key, "0", &Report::default())
            .unwrap()
            .id;
        let (tx, rx) = mpsc::channel(8);
        self.dispatcher
            .wait(id.clone(), Tags::new(), tx.clone())
            .await;
        (id, tx, rx)
    }
}

/// The next message pushed on a session (within a minute).
async fn pushed(rx: &mut Inbox) -> crate::proto::CoordinatorMessage {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("something pushed")
        .expect("session queue open")
        .expect("not an error")
}

/// The next message on a session: an offer (`Ok(job)`) or a withdrawal
/// (`Err(job)`).
async fn next(rx: &mut Inbox) -> Result<String, String> {
    match pushed(rx).await.msg {
        Some(Msg::JobOffer(o)) => Ok(o.job_id),
        Some(Msg::CancelJob(c)) => Err(c.job_id),
        other => panic!("unexpected push {other:?}"),
    }
}

/// The next message on a session, which must be an offer.
async fn offer(rx: &mut Inbox) -> crate::proto::JobOffer {
    match pushed(rx).await.msg {
        Some(Msg::JobOffer(o)) => o,
        other => panic!("expected an offer, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_offer_is_withdrawn_at_its_timeout_and_offered_again() {
    let s = setup();
    let j1 = s.job("one");
    let (d1, tx1, mut rx1) = s.waiting("d1").await;
    let first = offer(&mut rx1).await;
    assert_eq!(first.job_id, j1);
    let offered = Instant::now();

    // Acquires while the offer stands bring no second job.
    let j2 = s.job("two");
    for _ in 0..3 {
        s.dispatcher
            .wait(d1.clone(), Tags::new(), tx1.clone())
            .await;
    }
    s.dispatcher.kick();
    // Another daemon gets the second job and acknowledges it in time.
    let (d2, tx2, mut rx2) = s.waiting("d2").await;
    let second = offer(&mut rx2).await;
    assert_eq!(second.job_id, j2);
    s.store
        .ack(&j2, &d2, "d2", "k", &second.job_secret)
        .unwrap();

    // d1 hears nothing but the withdrawal, when the timeout has passed.
    assert_eq!(next(&mut rx1).await, Err(j1.clone()));
    assert!(offered.elapsed() >= TIMEOUT, "{:?}", offered.elapsed());
    assert_eq!(s.store.job(&j1).unwrap().offered_to, None);
    let late = s
        .store
        .ack(&j1, &d1, "d1", "k", &first.job_secret)
        .unwrap_err();
    assert!(matches!(late, CoordError::FailedPrecondition(_)), "{late}");

    // Back in the queue: the next daemon to wait gets it. The second
    // job's acknowledged offer was never withdrawn.
    s.dispatcher
        .wait(d2.clone(), Tags::new(), tx2.clone())
        .await;
    assert_eq!(next(&mut rx2).await, Ok(j1.clone()));
    assert_eq!(s.store.job(&j2).unwrap().status, JobStatus::Running);
    // d1 asks again and is free to get work; none is left.
    s.dispatcher
        .wait(d1.clone(), Tags::new(), tx1.clone())
        .await;
    // d2 lets this one lapse too: withdrawn, and d1 (waiting) gets it.
    assert_eq!(next(&mut rx2).await, Err(j1.clone()));
    assert_eq!(next(&mut rx1).await, Ok(j1.clone()));
}

/// An ended session's offer is forgotten at once: the dispatcher lets go
/// of the session's queue (its response stream can end) instead of holding
/// it until the timer, and the job is offered to the next daemon.
#[tokio::test(start_paused = true)]
async fn a_session_that_ends_takes_its_offer_timer_with_it() {
    let s = setup();
    let j1 = s.job("one");
    let (d1, tx1, mut rx1) = s.waiting("d1").await;
    assert_eq!(next(&mut rx1).await, Ok(j1.clone()));
    let ended = Instant::now();
    s.dispatcher.session_ended(d1.clone()).await;
    s.store.disconnect_daemon(&d1).unwrap();
    drop(tx1);
    assert!(rx1.recv().await.is_none(), "nothing for an ended session");
    assert!(
        ended.elapsed() < TIMEOUT,
        "let go at once: {:?}",
        ended.elapsed()
    );
    let (_, _tx2, mut rx2) = s.waiting("d2").await;
    assert_eq!(next(&mut rx2).await, Ok(j1));
}
