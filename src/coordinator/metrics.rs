//! The coordinator's `/metrics` and `/readyz`. Everything the store knows
//! (queue depth, outcomes, durations, queue waits, daemons, prebuild
//! pools) is read per scrape by one collector, so no call site updates a
//! gauge; only the dispatch latency, which the store never sees, is a live
//! histogram the dispatcher observes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Hub;
use super::store::Histo;

pub(crate) mod prebuilds;
mod versions;

/// Bucket bounds (seconds) for queue waits and dispatch latency.
const WAIT_BOUNDS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Bucket bounds (seconds) for job run times.
const DURATION_BOUNDS: [f64; 10] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// A new dispatch latency histogram (shared with the dispatcher).
pub fn dispatch_latency() -> Histogram {
    Histogram::new(WAIT_BOUNDS)
}

type Labels = Vec<(&'static str, String)>;

/// What the store shows, read at once (on a blocking thread).
#[derive(Debug, Clone)]
struct Snapshot {
    jobs: Vec<super::store::JobGauge>,
    outcomes: Vec<(String, String, u64)>,
    durations: Vec<Histo>,
    waits: Vec<Histo>,
    daemons: std::collections::BTreeMap<(String, String), i64>,
    prebuilds: crate::proto::PrebuildStatus,
    prebuild_counts: Vec<super::store::PrebuildCount>,
    /// Claims by (template, preset), from the claim-build jobs.
    claims: Vec<(String, String, u64)>,
    replacements: Vec<(String, String, u64)>,
    versions: Vec<super::store::VersionCount>,
}

impl Snapshot {
    fn read(hub: &Hub) -> Result<Snapshot, String> {
        let store = &hub.store;
        let e = |what: &'static str| move |x: super::error::CoordError| format!("read {what}: {x}");
        let mut daemons: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for d in store.list_daemons().map_err(e("daemons"))? {
            let state = d.status();
            if state != "offline" {
                let key = (state.to_string(), crate::tags::display(&d.tags));
                *daemons.entry(key).or_default() += 1;
            }
        }
        Ok(Snapshot {
            jobs: store.job_gauges().map_err(e("job gauges"))?,
            outcomes: store.job_outcomes().map_err(e("job outcomes"))?,
            durations: store
                .job_durations(&DURATION_BOUNDS)
                .map_err(e("job durations"))?,
            waits: store.queue_waits(&WAIT_BOUNDS).map_err(e("queue waits"))?,
            daemons,
            prebuilds: super::prebuilds::status(hub).map_err(e("prebuild pools"))?,
            prebuild_counts: store.prebuild_counts().map_err(e("prebuild counts"))?,
            claims: store.claim_counts().map_err(e("claims"))?,
            replacements: store.replacement_counts().map_err(e("replacements"))?,
            versions: store.version_counts().map_err(e("template versions"))?,
        })
    }
}

/// A snapshot younger than this is served as it is.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// How long a scrape waits for a fresh snapshot before it is served the
/// previous one.
const SCRAPE_WAITS: Duration = Duration::from_secs(2);

/// The latest snapshot (or why it could not be read), and when it was read.
type Cache = Arc<std::sync::Mutex<(Result<Snapshot, String>, Instant)>>;

#[derive(Debug)]
struct StoreCollector {
    cache: Cache,
}

/// The store is read for a snapshot only when a scrape asks: the read
/// scans the job history (histograms, counters), and must not cost a
/// coordinator nobody scrapes — or one scraped every 30 s — a scan every
/// second, holding the store while its dispatcher waits.
struct Snapshots {
    cache: Cache,
    /// A scrape wants a fresh snapshot.
    wanted: Notify,
    /// Bumped after each read.
    read: watch::Sender<u64>,
}

impl Snapshots {
    /// Before a scrape: asks for a fresh snapshot unless the cached one is
    /// young, and waits for it (at most [`SCRAPE_WAITS`]).
    async fn freshen(self: Arc<Self>) {
        let taken = self.cache.lock().unwrap_or_else(|p| p.into_inner()).1;
        if taken.elapsed() < SNAPSHOT_EVERY {
            return;
        }
        let mut read = self.read.subscribe();
        self.wanted.notify_one();
        if tokio::time::timeout(SCRAPE_WAITS, read.changed())
            .await
            .is_err()
        {
            tracing::warn!("metrics: the store snapshot is slow; serving the previous one");
        }
    }

    /// Reads a snapshot whenever one is wanted, one read at a time, on a
    /// blocking thread.
    async fn refresh(self: Arc<Self>, hub: Arc<Hub>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = self.wanted.notified() => {}
            }
            let h = hub.clone();
            let read = tokio::task::spawn_blocking(move || Snapshot::read(&h))
                .await
                .unwrap_or_else(|e| Err(format!("metrics snapshot task: {e}")));
            if let Err(why) = &read {
                tracing::error!(error = %why, "metrics: read the store");
            }
            *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = (read, Instant::now());
            self.read.send_modify(|n| *n += 1);
        }
    }
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels, i64)>,
) -> std::fmt::Result {
    let family = Family::<Labels, Gauge>::default();
    for (labels, v) in rows {
        family.get_or_create(&labels).set(v);
    }
    let m = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(m)
}

fn histograms(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    keys: &[&'static str],
    rows: Vec<Histo>,
) -> std::fmt::Result {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for h in rows {
        let labels: Labels = keys.iter().copied().zip(h.labels).collect();
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum_seconds,
            h.count,
            &h.buckets,
            None,
        )?;
    }
    Ok(())
}

fn err(what: &'static str) -> impl Fn(std::fmt::Error) -> String {
    move |x| format!("encode {what}: {x}")
}

impl StoreCollector {
    fn collect(&self, mut e: DescriptorEncoder) -> Result<(), String> {
        let snap = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()?;
        let jobs = snap.jobs;
        gauges(
            &mut e,
            "provisionerd_coordinator_jobs",
            "Unfinished jobs by status (pending, running, canceling), tag set and initiator (human or prebuild).",
            jobs.into_iter().map(|g| {
                let initiator = if g.prebuild { "prebuild" } else { "human" };
                (
                    vec![
                        ("status", g.status),
                        ("tags", g.tags),
                        ("initiator", initiator.to_string()),
                    ],
                    g.count as i64,
                )
            }),
        )
        .map_err(err("jobs"))?;
        let outcomes = snap.outcomes;
        let family = Family::<Labels, prometheus_client::metrics::counter::Counter>::default();
        for (ty, outcome, n) in outcomes {
            family
                .get_or_create(&vec![("type", ty), ("outcome", outcome)])
                .inc_by(n);
        }
        // Counters get `_total` appended by the encoder.
        let m = e
            .encode_descriptor(
                "provisionerd_coordinator_job_outcomes",
                "Finished jobs by type and outcome.",
                None,
                family.metric_type(),
            )
            .map_err(err("outcomes"))?;
        family.encode(m).map_err(err("outcomes"))?;
        let durations = snap.durations;
        histograms(
            &mut e,
            "provisionerd_coordinator_job_duration_seconds",
            "Run time (acknowledged to finished) of finished jobs, by type and outcome.",
            &["type", "outcome"],
            durations,
        )
        .map_err(err("durations"))?;
        let waits = snap.waits;
        histograms(
            &mut e,
            "provisionerd_coordinator_job_queue_wait_seconds",
            "Time from a job's creation to a daemon acknowledging it, by initiator.",
            &["initiator"],
            waits,
        )
        .map_err(err("waits"))?;
        let daemons = snap.daemons;
        gauges(
            &mut e,
            "provisionerd_coordinator_daemons",
            "Connected daemons by reported state and tag set.",
            daemons
                .into_iter()
                .map(|((state, tags), n)| (vec![("state", state), ("tags", tags)], n)),
        )
        .map_err(err("daemons"))?;
        versions::encode(&mut e, &snap.versions).map_err(err("template versions"))?;
        prebuilds::encode(&mut e, &snap.prebuilds, snap.prebuild_counts)
            .map_err(err("prebuilds"))?;
        let status = snap.prebuilds;
        let paused = Gauge::<i64>::default();
        paused.set(i64::from(status.paused));
        let m = e
            .encode_descriptor(
                "coderd_prebuilds_reconciliation_paused",
                "1 while prebuild reconciliation is paused.",
                None,
                paused.metric_type(),
            )
            .map_err(err("prebuilds"))?;
        paused.encode(m).map_err(err("prebuilds"))?;
        prebuilds::encode_claims(&mut e, &snap.claims, &snap.replacements).map_err(err("claims"))
    }
}

impl Collector for StoreCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> std::fmt::Result {
        // A store error must not hide the other metrics' families: the
        // scrape fails (500 with the reason logged) rather than lie.
        self.collect(encoder).map_err(|why| {
            tracing::error!(error = %why, "metrics: read the store");
            std::fmt::Error
        })
    }
}

/// The coordinator's registry, and the hook to run before each scrape:
/// its store-backed metrics come from a snapshot read when a scrape finds
/// the last one older than [`SNAPSHOT_EVERY`] (the first is read before
/// this returns); reads stop with `shutdown`.
pub async fn registry(
    hub: Arc<Hub>,
    dispatch_latency: Histogram,
    shutdown: CancellationToken,
) -> (Registry, Arc<crate::health::FreshenFn>) {
    let hub_claims = hub.claim_durations.clone();
    let hub_leader = hub.cluster.leader_gauge();
    let h = hub.clone();
    let first = tokio::task::spawn_blocking(move || Snapshot::read(&h))
        .await
        .unwrap_or_else(|e| Err(format!("metrics snapshot task: {e}")));
    let cache: Cache = Arc::new(std::sync::Mutex::new((first, Instant::now())));
    let snapshots = Arc::new(Snapshots {
        cache: cache.clone(),
        wanted: Notify::new(),
        read: watch::channel(0).0,
    });
    hub.tasks
        .clone()
        .spawn(snapshots.clone().refresh(hub, shutdown));
    let freshen: Arc<crate::health::FreshenFn> =
        Arc::new(move || Box::pin(snapshots.clone().freshen()));
    let mut r = Registry::default();
    r.register(
        "provisionerd_coordinator_dispatch_latency_seconds",
        "Time from a matching daemon waiting while a job is pending to the job's offer.",
        dispatch_latency,
    );
    r.register(
        "coderd_prebuilt_workspace_claim_duration_seconds",
        "Time a claim of a prebuilt workspace took (choose, take, enqueue its claim build).",
        hub_claims,
    );
    r.register(
        "provisionerd_coordinator_leader",
        "1 while this replica is the leader (runs the lease reaper and the prebuild reconciler).",
        hub_leader,
    );
    r.register_collector(Box::new(StoreCollector { cache }));
    (r, freshen)
}

/// How often the write probe runs, and how long one may take.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Readiness: the store took a write recently, and the coordinator is not
/// shutting down. The probe runs in the background, so `/readyz` never
/// waits on the database lock.
pub struct Readiness {
    store_ok: AtomicBool,
    /// A probe's write is still running: the next one is skipped rather
    /// than piling up blocking tasks behind a stuck database.
    probing: Arc<AtomicBool>,
    last_error: std::sync::Mutex<String>,
}

impl Readiness {
    pub fn check(&self, stopping: &CancellationToken) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if !self.store_ok.load(Ordering::Relaxed) {
            let e = self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            why.push(format!("store does not take writes: {e}"));
        }
        if stopping.is_cancelled() {
            why.push("coordinator is shutting down".into());
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

/// Starts the write probe; its first result is in before this returns.
pub async fn readiness(hub: Arc<Hub>, shutdown: CancellationToken) -> Arc<Readiness> {
    let r = Arc::new(Readiness {
        store_ok: AtomicBool::new(false),
        probing: Arc::new(AtomicBool::new(false)),
        last_error: std::sync::Mutex::new("not probed yet".into()),
    });
    probe(&hub, &r).await;
    let task = r.clone();
    hub.tasks.clone().spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PROBE_EVERY) => {}
            }
            probe(&hub, &task).await;
        }
    });
    r
}

async fn probe(hub: &Arc<Hub>, r: &Readiness) {
    let result = if r.probing.swap(true, Ordering::AcqRel) {
        Err(format!(
            "an earlier write probe has not finished (it took longer than {PROBE_EVERY:?})"
        ))
    } else {
        let store = hub.store.clone();
        let probing = r.probing.clone();
        // The store is synchronous and may wait on its lock (or a busy
        // database): off the runtime threads, with a deadline.
        let write = tokio::task::spawn_blocking(move || {
            let result = store.probe_write();
            probing.store(false, Ordering::Release);
            result
        });
        match tokio::time::timeout(PROBE_EVERY, write).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(format!("probe task: {e}")),
            Err(_) => Err(format!("a write took longer than {PROBE_EVERY:?}")),
        }
    };
    match result {
        Ok(()) => r.store_ok.store(true, Ordering::Relaxed),
        Err(e) => {
            if r.store_ok.swap(false, Ordering::Relaxed) {
                tracing::error!(error = %e, "readiness: store write probe failed");
            }
            if let Ok(mut last) = r.last_error.lock() {
                *last = e;
            }
        }
    }
}
