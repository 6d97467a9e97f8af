//! Runs one acknowledged job: the runner in its own task, its logs shipped
//! alongside, then the result reported with FinishJob.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::Backoff;
use super::logship::Shipper;
use super::rpc::{self, Client, Verdict};
use crate::proto::{self, FinishJobRequest, JobOffer, JobOutcome, JobType};
use crate::runner::{self, Build, JobKind, Outcome, RunnerConfig, Transition, Variable};

/// Lines the runner may get ahead of the shipper before it waits.
const LOG_CHANNEL_CAPACITY: usize = 1024;
/// After a hard cancel (and once the runner has returned), how long the
/// daemon keeps trying to ship the last lines and report the result.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every job needs, set once per daemon.
pub(super) struct JobCtx {
    pub client: Client,
    pub runner: RunnerConfig,
    pub tracker: TaskTracker,
    /// The daemon's hard-cancel token (`Shutdown::cancel`).
    pub cancel: CancellationToken,
}

/// Runs `offer` to the end and reports it. `job_cancel` interrupts the
/// runner (operator cancel or daemon shutdown); it is a child of
/// `ctx.cancel`.
pub(super) async fn run(ctx: &JobCtx, offer: JobOffer, job_cancel: CancellationToken) {
    let started = Instant::now();
    let job_id = offer.job_id.clone();
    let kind = job_type_name(offer.r#type);
    tracing::info!(
        job_id,
        r#type = kind,
        template = %offer.template_name,
        initiator = %offer.initiator,
        "job started"
    );
    let runner_done = CancellationToken::new();
    let deadline = report_deadline(&ctx.cancel, &runner_done);
    tokio::pin!(deadline);

    let (outcome, log_count) = match job_from_offer(offer) {
        Ok(job) => {
            let (tx, mut rx) = mpsc::channel(LOG_CHANNEL_CAPACITY);
            let cfg = ctx.runner.clone();
            let cancel = job_cancel.clone();
            let done = runner_done.clone().drop_guard();
            let runner = ctx.tracker.spawn(async move {
                let _done = done;
                runner::run(&cfg, job, tx, cancel).await
            });
            let shipper = Shipper {
                client: &ctx.client,
                job_id: &job_id,
                job_cancel: &job_cancel,
                started,
            };
            let shipped = tokio::select! {
                r = shipper.ship(&mut rx) => r,
                () = &mut deadline => Err("ship job logs: gave up 10s after cancel".to_string()),
            };
            if shipped.is_err() {
                // Nobody will take our result: stop the work, and keep
                // reading so the runner never blocks on a full channel.
                job_cancel.cancel();
                while rx.recv().await.is_some() {}
            }
            let outcome = runner.await.unwrap_or_else(|e| Outcome::Failed {
                error: format!("run job {job_id}: runner task failed: {e}"),
                state: None,
            });
            (outcome, shipped)
        }
        Err(error) => {
            runner_done.cancel();
            (Outcome::Failed { error, state: None }, Ok(0))
        }
    };
    let label = outcome_name(&outcome);
    let reported = match log_count {
        Ok(count) => {
            let req = finish_request(&job_id, outcome, count);
            tokio::select! {
                r = finish(&ctx.client, req, started) => r,
                () = &mut deadline => Err("gave up 10s after cancel".to_string()),
            }
        }
        Err(e) => Err(e),
    };
    if let Err(error) = &reported {
        tracing::error!(job_id, error, "report job result: not reported");
    }
    tracing::info!(
        job_id,
        r#type = kind,
        outcome = label,
        reported = reported.is_ok(),
        duration = ?started.elapsed(),
        "job finished"
    );
}

/// Fires `REPORT_TIMEOUT` after both a hard cancel and the runner's return:
/// until cancel, reporting is retried for as long as it takes; the runner's
/// own SIGINT grace must not eat into the reporting time.
async fn report_deadline(cancel: &CancellationToken, runner_done: &CancellationToken) {
    cancel.cancelled().await;
    runner_done.cancelled().await;
    tokio::time::sleep(REPORT_TIMEOUT).await;
}

/// FinishJob, retried on transport errors (the coordinator acknowledges a
/// repeated result again).
async fn finish(client: &Client, req: FinishJobRequest, started: Instant) -> Result<(), String> {
    let mut backoff = Backoff::new();
    loop {
        let mut c = client.clone();
        let st = match rpc::bounded(c.finish_job(req.clone())).await {
            Ok(_) => return Ok(()),
            Err(st) => st,
        };
        if rpc::classify(&st, started.elapsed()) == Verdict::Refused {
            return Err(format!(
                "finish job {}: coordinator refused: {}",
                req.job_id,
                rpc::describe(&st)
            ));
        }
        let wait = backoff.next_delay();
        tracing::warn!(
            job_id = req.job_id,
            error = %rpc::describe(&st),
            retry_in = ?wait,
            "report job result failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

fn job_from_offer(offer: JobOffer) -> Result<runner::Job, String> {
    let id = &offer.job_id;
    let kind = match JobType::try_from(offer.r#type) {
        Ok(JobType::TemplateImport) => JobKind::TemplateImport,
        Ok(JobType::WorkspaceBuild) => {
            let b = offer
                .workspace_build
                .ok_or_else(|| format!("run job {id}: workspace build without build details"))?;
            let transition = match proto::Transition::try_from(b.transition) {
                Ok(proto::Transition::Start) => Transition::Start,
                Ok(proto::Transition::Stop) => Transition::Stop,
                Ok(proto::Transition::Destroy) => Transition::Destroy,
                _ => {
                    return Err(format!(
                        "run job {id}: unsupported transition {}",
                        b.transition
                    ));
                }
            };
            JobKind::WorkspaceBuild(Build {
                workspace_id: b.workspace_id,
                workspace_name: b.workspace_name,
                owner: b.owner,
                transition,
                state: b.state,
                build_id: b.build_id,
            })
        }
        _ => {
            return Err(format!(
                "run job {id}: unsupported job type {}",
                offer.r#type
            ));
        }
    };
    Ok(runner::Job {
        id: offer.job_id,
        kind,
        template_archive: offer.template_archive,
        template_name: offer.template_name,
        template_version_id: offer.template_version_id,
        initiator: offer.initiator,
        variables: offer
            .variables
            .into_iter()
            .map(|v| Variable {
                name: v.name,
                value: v.value,
                sensitive: v.sensitive,
            })
            .collect(),
    })
}

fn finish_request(job_id: &str, outcome: Outcome, log_count: u64) -> FinishJobRequest {
    let (outcome, error, state, variables) = match outcome {
        Outcome::Succeeded { state, variables } => {
            (JobOutcome::Succeeded, String::new(), state, variables)
        }
        Outcome::Failed { error, state } => (JobOutcome::Failed, error, state, Vec::new()),
        Outcome::Canceled { error, state } => (JobOutcome::Canceled, error, state, Vec::new()),
    };
    FinishJobRequest {
        job_id: job_id.to_string(),
        outcome: outcome as i32,
        error,
        has_state: state.is_some(),
        state: state.unwrap_or_default(),
        variables: variables
            .into_iter()
            .map(|v| proto::TemplateVariable {
                required: v.default_json.is_none(),
                name: v.name,
                description: v.description,
                r#type: v.type_expr,
                default_json: v.default_json.unwrap_or_default(),
                sensitive: v.sensitive,
            })
            .collect(),
        log_count,
    }
}

fn job_type_name(ty: i32) -> &'static str {
    match JobType::try_from(ty) {
        Ok(JobType::TemplateImport) => "template_import",
        Ok(JobType::WorkspaceBuild) => "workspace_build",
        _ => "unknown",
    }
}

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Failed { .. } => "failed",
        Outcome::Canceled { .. } => "canceled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{VariableValue, WorkspaceBuild};
    use crate::runner::TemplateVariable;

    fn offer(ty: JobType, build: Option<WorkspaceBuild>) -> JobOffer {
        JobOffer {
            job_id: "j1".into(),
            r#type: ty as i32,
            template_name: "t".into(),
            variables: vec![VariableValue {
                name: "region".into(),
                value: "eu".into(),
                sensitive: true,
            }],
            workspace_build: build,
            ..Default::default()
        }
    }

    #[test]
    fn offers_convert_to_runner_jobs() {
        let job = job_from_offer(offer(JobType::TemplateImport, None)).unwrap();
        assert!(matches!(job.kind, JobKind::TemplateImport));
        assert_eq!(
            (job.variables[0].name.as_str(), job.variables[0].sensitive),
            ("region", true)
        );

        let build = WorkspaceBuild {
            workspace_name: "ws".into(),
            transition: proto::Transition::Destroy as i32,
            state: b"{}".to_vec(),
            ..Default::default()
        };
        let job = job_from_offer(offer(JobType::WorkspaceBuild, Some(build))).unwrap();
        let JobKind::WorkspaceBuild(b) = job.kind else {
            panic!("not a build")
        };
        assert_eq!(
            (b.transition, b.workspace_name.as_str(), b.state.as_slice()),
            (Transition::Destroy, "ws", &b"{}"[..])
        );

        let err = job_from_offer(offer(JobType::WorkspaceBuild, None)).unwrap_err();
        assert!(err.starts_with("run job j1:"), "{err}");
        let err = job_from_offer(offer(JobType::Unspecified, None)).unwrap_err();
        assert!(err.contains("unsupported job type 0"), "{err}");
    }

    #[test]
    fn outcomes_convert_to_finish_requests() {
        let vars = vec![
            TemplateVariable {
                name: "a".into(),
                description: "d".into(),
                type_expr: "string".into(),
                default_json: None,
                sensitive: false,
            },
            TemplateVariable {
                name: "b".into(),
                description: String::new(),
                type_expr: "number".into(),
                default_json: Some("3".into()),
                sensitive: true,
            },
        ];
        let req = finish_request(
            "j1",
            Outcome::Succeeded {
                state: None,
                variables: vars,
            },
            7,
        );
        assert_eq!(
            (req.outcome, req.has_state, req.log_count),
            (JobOutcome::Succeeded as i32, false, 7)
        );
        assert!(req.variables[0].required && req.variables[0].default_json.is_empty());
        assert!(
            !req.variables[1].required
                && req.variables[1].default_json == "3"
                && req.variables[1].r#type == "number"
        );

        let req = finish_request(
            "j1",
            Outcome::Canceled {
                error: "canceled".into(),
                state: Some(b"s".to_vec()),
            },
            0,
        );
        assert_eq!(
            (
                req.outcome,
                req.has_state,
                req.state.as_slice(),
                req.error.as_str()
            ),
            (JobOutcome::Canceled as i32, true, &b"s"[..], "canceled")
        );
    }
}
