//! Jobs: get (with why a pending one waits), cancel, and their logs
//! (streamed, optionally followed until the job ends).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{AdminApi, convert};
use crate::coordinator::Hub;
use crate::coordinator::cluster::ALL_JOBS;
use crate::coordinator::error::Result;
use crate::coordinator::routing;
use crate::coordinator::store::JobStatus;
use crate::proto;

pub(super) fn get(api: &AdminApi, req: proto::GetJobRequest) -> Result<proto::Job> {
    let job = api.hub.store.job(&req.id)?;
    let mut routing = Vec::new();
    if let Some(daemon) = &job.offered_to {
        routing.push(format!(
            "offered to daemon {daemon}: it runs once the daemon acknowledges it, \
             or goes back to the queue if it does not in time"
        ));
    }
    if job.status == JobStatus::Pending {
        routing.extend(routing::explain(&job.tags, &api.hub.store.list_daemons()?));
    }
    let mut job = convert::job(&api.hub.store, job);
    job.routing = routing;
    Ok(job)
}

pub(super) fn cancel(api: &AdminApi, req: proto::CancelJobRequest) -> Result<proto::Job> {
    let id = req.id;
    let canceled = api.hub.store.cancel_job_if(&id, req.only_if_pending)?;
    let daemon = canceled.job.daemon_name.as_deref().unwrap_or_default();
    match &canceled.notify_daemon {
        // The replica holding its session pushes it (and logs it); with
        // no session anywhere, it learns from its next UpdateJob.
        Some(daemon_id) => {
            tracing::info!(job = %id, daemon, "job canceling: telling the daemon");
            api.hub.cancel_on_daemon(daemon_id, &id);
        }
        None => tracing::info!(job = %id, "job canceled before it ran"),
    }
    api.hub.job_changed(&id);
    Ok(convert::job(&api.hub.store, canceled.job))
}

type LogSender = mpsc::Sender<Result<proto::LogLine, Status>>;

/// The job's log lines, sent by a task the hub tracks.
pub(super) fn logs(
    api: &AdminApi,
    req: proto::StreamJobLogsRequest,
) -> Result<ReceiverStream<Result<proto::LogLine, Status>>> {
    api.hub.store.job(&req.job_id)?;
    let (tx, rx) = mpsc::channel(256);
    let hub = api.hub.clone();
    api.hub.tasks.spawn(follow_logs(hub, req, tx));
    Ok(ReceiverStream::new(rx))
}
/// Sends a job's stored lines after `after_seq`; with `follow`, keeps
/// sending new ones until the job has finished and every line is out.
async fn follow_logs(hub: Arc<Hub>, req: proto::StreamJobLogsRequest, tx: LogSender) {
    let mut changes = hub.changes.subscribe();
    let mut after = req.after_seq;
    loop {
        // Read the status before the lines: if it says finished, the lines
        // read next are complete (FinishJob requires every line stored).
        let id = req.job_id.clone();
        let finished = match hub.store.call(move |s| s.job(&id)).await {
            Ok(j) => j.is_finished(),
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        loop {
            let id = req.job_id.clone();
            let rows = match hub.store.call(move |s| s.logs(&id, after, 500)).await {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            if rows.is_empty() {
                break;
            }
            for r in rows {
                after = r.seq;
                if tx.send(Ok(convert::log_line(r))).await.is_err() {
                    return;
                }
            }
        }
        if !req.follow || finished {
            return;
        }
        // Wake on a change to this job, or re-check after a second in case
        // a notification was missed (lagged receiver).
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match changes.recv().await {
                    Ok(id) if id == req.job_id || id == ALL_JOBS => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
        .await;
        if tx.is_closed() || hub.stopping.is_cancelled() {
            return;
        }
    }
}
