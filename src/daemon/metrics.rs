//! The daemon's Prometheus metrics: one struct of handles, registered once
//! into the registry `/metrics` serves and cloned into the tasks that update
//! them (the acquire loop, the link, the log shipper, the job, the runner's
//! command observer, the cache-size sampler). A plain counter or gauge is an
//! atomic; a labelled `Family` finds its series under an `RwLock`, so an
//! update may wait briefly: while another series is added, or, when it adds
//! one, while a scrape encodes the family.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::proto::DaemonState;

/// How often the cache dir is measured (a walk of the plugin cache and work
/// dirs: too slow for every scrape).
pub(super) const CACHE_SIZE_PERIOD: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct JobLabels {
    pub r#type: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: String,
    name: String,
}

/// The states `provisionerd_daemon_state` has a series for.
const STATES: [&str; 5] = ["idle", "busy", "draining", "canceling", "not-ready"];

/// Every handle; cheap to clone (each is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    jobs_running: Gauge,
    jobs: Family<JobLabels, Counter>,
    job_duration: Family<JobLabels, Histogram>,
    log_lines: Counter,
    log_bytes: Counter,
    reconnects: Counter,
    state: Family<StateLabels, Gauge>,
    drain: DrainLeft,
    cache_dir_bytes: Gauge,
    terraform: Family<StageLabels, Histogram>,
}

impl Metrics {
    /// Creates the handles and the registry that serves them.
    pub fn new(name: &str) -> (Metrics, Registry) {
        let mut reg = Registry::with_prefix("provisionerd_daemon");
        let m = Metrics {
            jobs_running: Gauge::default(),
            jobs: Family::default(),
            // 1 s to ~9 h: an import takes seconds, a build hours at worst.
            job_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 16))
            }),
            log_lines: Counter::default(),
            log_bytes: Counter::default(),
            reconnects: Counter::default(),
            state: Family::default(),
            drain: DrainLeft::default(),
            cache_dir_bytes: Gauge::default(),
            // 0.1 s to ~55 min.
            terraform: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.1, 2.0, 16))
            }),
        };
        // Counters get `_total` from the encoder.
        reg.register(
            "jobs_running",
            "1 while a job runs, else 0",
            m.jobs_running.clone(),
        );
        reg.register("jobs", "Jobs run, by type and outcome", m.jobs.clone());
        reg.register(
            "job_duration_seconds",
            "Job duration from acknowledgement to report, by type and outcome",
            m.job_duration.clone(),
        );
        reg.register(
            "log_lines_shipped",
            "Job log lines the coordinator confirmed",
            m.log_lines.clone(),
        );
        reg.register(
            "log_bytes_shipped",
            "Bytes of job log output the coordinator confirmed",
            m.log_bytes.clone(),
        );
        reg.register(
            "reconnects",
            "Sessions to the coordinator opened after the first",
            m.reconnects.clone(),
        );
        reg.register(
            "state",
            "1 for the daemon's current state, 0 for the others",
            m.state.clone(),
        );
        reg.register(
            "drain_seconds_left",
            "Seconds until the drain deadline; 0 when not draining or no deadline",
            m.drain.clone(),
        );
        reg.register(
            "cache_dir_bytes",
            "Size of the cache dir (plugin cache, work dirs, spool), sampled every minute",
            m.cache_dir_bytes.clone(),
        );
        reg.register(
            "terraform_command_duration_seconds",
            "Duration of each terraform command, by stage",
            m.terraform.clone(),
        );
        let info: Family<InfoLabels, Gauge> = Family::default();
        info.get_or_create(&InfoLabels {
            version: crate::VERSION.to_string(),
            name: name.to_string(),
        })
        .set(1);
        reg.register("info", "Daemon version and name; always 1", info);
        m.set_state(DaemonState::Idle);
        (m, reg)
    }

    /// Marks `state` current (one series per state, the others 0).
    pub(super) fn set_state(&self, state: DaemonState) {
        let current = match state {
            DaemonState::Busy => "busy",
            DaemonState::Draining => "draining",
            DaemonState::Canceling => "canceling",
            DaemonState::NotReady => "not-ready",
            _ => "idle",
        };
        for s in STATES {
            self.state
                .get_or_create(&StateLabels { state: s })
                .set(i64::from(s == current));
        }
    }

    pub(super) fn job_started(&self) {
        self.jobs_running.set(1);
    }

    /// A job ended; `outcome` is `None` when it turned out not to be ours
    /// (the coordinator refused the ownership confirmation).
    pub(super) fn job_ended(
        &self,
        kind: &'static str,
        outcome: Option<&'static str>,
        took: Duration,
    ) {
        self.jobs_running.set(0);
        if let Some(outcome) = outcome {
            let labels = JobLabels {
                r#type: kind,
                outcome,
            };
            self.jobs.get_or_create(&labels).inc();
            self.job_duration
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        }
    }

    pub(super) fn lines_shipped(&self, lines: u64, bytes: u64) {
        self.log_lines.inc_by(lines);
        self.log_bytes.inc_by(bytes);
    }

    pub(super) fn reconnected(&self) {
        self.reconnects.inc();
    }

    /// The drain's deadline (`None`: no deadline, or not draining).
    pub(super) fn drain_deadline(&self, at: Option<Instant>) {
        *self.drain.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// The runner's command observer: one histogram sample per command.
    pub(super) fn terraform_observer(&self) -> crate::runner::CommandObserver {
        let family = self.terraform.clone();
        crate::runner::CommandObserver::new(move |stage, took| {
            family
                .get_or_create(&StageLabels {
                    stage: stage.to_string(),
                })
                .observe(took.as_secs_f64());
        })
    }

    /// Measures the cache dir every [`CACHE_SIZE_PERIOD`] until `stop`.
    pub(super) async fn sample_cache_dir(self, dir: PathBuf, stop: CancellationToken) {
        loop {
            let d = dir.clone();
            if let Ok(bytes) = tokio::task::spawn_blocking(move || dir_bytes(&d)).await {
                self.cache_dir_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CACHE_SIZE_PERIOD) => {}
            }
        }
    }
}

/// Bytes of the regular files under `dir` (symlinks not followed; what
/// cannot be read is skipped: a job may remove its work dir meanwhile).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// `drain_seconds_left`: computed when scraped from the deadline, so it
/// counts down without a task ticking it.
#[derive(Clone, Debug, Default)]
struct DrainLeft(Arc<Mutex<Option<Instant>>>);

impl EncodeMetric for DrainLeft {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let at = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        let left = at.map_or(0.0, |at| {
            at.saturating_duration_since(Instant::now()).as_secs_f64()
        });
        encoder.encode_gauge(&left)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(reg: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, reg).unwrap();
        s
    }

    #[test]
    fn names_and_values_are_what_the_chart_expects() {
        let (m, reg) = Metrics::new("d1");
        m.job_started();
        m.set_state(DaemonState::Busy);
        m.lines_shipped(3, 42);
        m.job_ended("workspace_build", Some("succeeded"), Duration::from_secs(3));
        m.terraform_observer()
            .observe("plan", Duration::from_millis(300));
        let text = scrape(&reg);
        for want in [
            "provisionerd_daemon_jobs_running 0\n",
            "provisionerd_daemon_jobs_total{type=\"workspace_build\",outcome=\"succeeded\"} 1\n",
            "provisionerd_daemon_job_duration_seconds_count{type=\"workspace_build\",outcome=\"succeeded\"} 1\n",
            "provisionerd_daemon_log_lines_shipped_total 3\n",
            "provisionerd_daemon_log_bytes_shipped_total 42\n",
            "provisionerd_daemon_reconnects_total 0\n",
            "provisionerd_daemon_state{state=\"busy\"} 1\n",
            "provisionerd_daemon_state{state=\"idle\"} 0\n",
            "provisionerd_daemon_drain_seconds_left 0.0\n",
            "provisionerd_daemon_terraform_command_duration_seconds_count{stage=\"plan\"} 1\n",
            "provisionerd_daemon_info{version=\"",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn drain_seconds_left_counts_down_to_the_deadline() {
        let (m, reg) = Metrics::new("d1");
        m.drain_deadline(Some(Instant::now() + Duration::from_secs(90)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(scrape(&reg).contains("provisionerd_daemon_drain_seconds_left 60.0\n"));
        m.drain_deadline(None);
        assert!(scrape(&reg).contains("provisionerd_daemon_drain_seconds_left 0.0\n"));
    }

    #[test]
    fn dir_bytes_adds_files_in_nested_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("a/b/y"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 15);
    }
}
