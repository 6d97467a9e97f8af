//! `jobs cancel`: ask the coordinator to cancel jobs (given, or read from
//! stdin with `-`), and optionally wait until each has ended.

use std::time::Duration;

use tokio_stream::StreamExt;

use super::client::Client;
use super::{CliError, job_status, print_job, print_json};
use crate::config::Output;
use crate::coordinator::store::JobStatus;
use crate::proto;

fn is_finished(job: &proto::Job) -> bool {
    job_status(job).is_some_and(JobStatus::is_finished)
}

/// The ids to cancel: the arguments, with `-` replaced by the ids on
/// stdin (whitespace-separated; blank lines ignored); an id listed twice (a
/// pipeline repeating itself) once.
fn expand(args: &[String], stdin: &mut dyn std::io::Read) -> Result<Vec<String>, CliError> {
    let mut ids = Vec::new();
    let mut read = false;
    for a in args {
        if a != "-" {
            ids.push(a.clone());
            continue;
        }
        if std::mem::replace(&mut read, true) {
            return Err(CliError::Usage("jobs cancel: `-` given twice".into()));
        }
        let mut text = String::new();
        stdin
            .read_to_string(&mut text)
            .map_err(|e| CliError::Usage(format!("jobs cancel: read ids from stdin: {e}")))?;
        ids.extend(text.split_whitespace().map(str::to_string));
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    Ok(ids)
}

/// Cancels every job named; each is reported, and a failure does not stop
/// the others. A single id given as an argument prints that job (as
/// before); several, or `-`, print a list (a JSON array with `-o json`).
pub(super) async fn cancel_all(
    c: &mut Client,
    args: &[String],
    wait: bool,
    yes: bool,
    output: Output,
) -> Result<(), CliError> {
    let ids = expand(args, &mut std::io::stdin())?;
    // The running jobs someone agreed to interrupt (every job with -y). Any
    // other is canceled only while it is still pending, checked by the
    // coordinator in the cancel itself: a job that starts after the listing
    // below is refused there, not interrupted without the question.
    let confirmed = match yes {
        true => None,
        false => Some(confirm_running(c, &ids, args.iter().any(|a| a == "-")).await?),
    };
    let only_if_pending = |id: &str| {
        confirmed
            .as_ref()
            .is_some_and(|agreed| !agreed.contains(id))
    };
    let single = args.len() == 1 && args[0] != "-";
    if single {
        let job = cancel(c, &ids[0], wait, only_if_pending(&ids[0])).await?;
        print_job(&job, output);
        return Ok(());
    }
    // Every cancel is sent before any is waited for: the daemons interrupt
    // their jobs at the same time, so waiting takes the longest, not the sum.
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for id in &ids {
        match cancel(c, id, false, only_if_pending(id)).await {
            Ok(job) => done.push(job),
            Err(e) => {
                eprintln!("Job {id}: cancel failed: {e}");
                failed.push(id.as_str());
            }
        }
    }
    if wait {
        let mut ended = Vec::with_capacity(done.len());
        for job in done {
            let id = job.id.clone();
            // A job that ended at once was reported when it was canceled.
            let was_canceling = job_status(&job) == Some(JobStatus::Canceling);
            match wait_ended(c, job).await {
                Ok(job) => {
                    if was_canceling {
                        report(&job);
                    }
                    ended.push(job);
                }
                Err(e) => {
                    eprintln!("Job {id}: wait failed: {e}");
                    failed.push(ids.iter().find(|i| **i == id).map_or("?", |s| s.as_str()));
                }
            }
        }
        done = ended;
    }
    if output == Output::Json {
        print_json(&serde_json::json!(
            done.iter().map(super::render::job_json).collect::<Vec<_>>()
        ));
    } else {
        for job in &done {
            print_job(job, output);
            println!();
        }
    }
    if failed.is_empty() {
        eprintln!("{} job(s) canceled or canceling.", done.len());
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "jobs cancel: {} of {} failed: {}",
            failed.len(),
            ids.len(),
            failed.join(", ")
        )))
    }
}

/// Asks before interrupting running jobs (as Coder asks before a
/// destructive step); a pending job has done nothing yet and is canceled
/// without asking. With `-` stdin held the ids, so there is nobody to ask.
/// An unknown id is left to the cancel, which reports it. Returns the
/// running jobs the person agreed to interrupt.
async fn confirm_running(
    c: &mut Client,
    ids: &[String],
    from_stdin: bool,
) -> Result<std::collections::HashSet<String>, CliError> {
    // One listing of the running jobs (no more than there are daemons), not
    // a lookup per id: `-` may bring thousands of pending ones.
    let (jobs, _) = super::pages::collect(None, None, |limit, after| {
        let mut c = c.clone();
        async move {
            let r = c
                .list_jobs(proto::ListJobsRequest {
                    status: JobStatus::Running.as_str().into(),
                    limit,
                    after,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok((r.jobs, r.next_cursor))
        }
    })
    .await?;
    let running_now: std::collections::HashSet<String> = jobs.into_iter().map(|j| j.id).collect();
    let running: Vec<&str> = ids
        .iter()
        .filter(|id| running_now.contains(*id))
        .map(String::as_str)
        .collect();
    if running.is_empty() {
        return Ok(Default::default());
    }
    let action = match running.as_slice() {
        [one] => format!("cancel running job {one}"),
        many => format!("cancel {} running jobs ({})", many.len(), many.join(", ")),
    };
    if from_stdin {
        return Err(CliError::Usage(format!(
            "{action}: refused without confirmation: the ids came from stdin, so \
             nobody can be asked; pass -y/--yes to interrupt running jobs"
        )));
    }
    super::confirm::confirm(&action, "Terraform is interrupted mid-run.", false)?;
    Ok(running.into_iter().map(str::to_string).collect())
}

/// Cancels job `id` and returns it (after it ended, with `wait`). Any
/// final status is success: a job whose terraform finished before the
/// interrupt reached it is reported as it ended, and its status says so.
async fn cancel(
    c: &mut Client,
    id: &str,
    wait: bool,
    only_if_pending: bool,
) -> Result<proto::Job, CliError> {
    let req = proto::CancelJobRequest {
        id: id.to_string(),
        only_if_pending,
    };
    let mut job = match c.cancel_job(req).await {
        Ok(job) => job.into_inner(),
        // It started after the check: nobody agreed to interrupt it.
        Err(s)
            if only_if_pending
                && s.code() == tonic::Code::FailedPrecondition
                && s.message().contains("it is running") =>
        {
            return Err(CliError::Failed(format!(
                "{}; it started after the check for running jobs, so it was not \
                 interrupted without confirmation (pass -y/--yes to interrupt it)",
                s.message()
            )));
        }
        Err(s) => return Err(s.into()),
    };
    if job_status(&job) == Some(JobStatus::Canceling) {
        eprintln!(
            "Job {id} is canceling: daemon {:?} was told to interrupt it.",
            job.daemon
        );
    }
    if wait {
        job = wait_ended(c, job).await?;
    }
    report(&job);
    Ok(job)
}

/// Says how a canceled job stands.
fn report(job: &proto::Job) {
    let id = &job.id;
    match job_status(job) {
        Some(JobStatus::Canceled) => eprintln!("Job {id} canceled."),
        Some(JobStatus::Canceling) => {}
        _ => eprintln!("Job {id} {} before the cancel took effect.", job.status),
    }
}

/// Waits until the job has ended. The coordinator's log follow ends the
/// stream when the job ends, so no polling is needed; the lines themselves
/// are not wanted.
async fn wait_ended(c: &mut Client, mut job: proto::Job) -> Result<proto::Job, CliError> {
    while !is_finished(&job) {
        let mut stream = c
            .stream_job_logs(proto::StreamJobLogsRequest {
                job_id: job.id.clone(),
                after_seq: job.log_count,
                follow: true,
            })
            .await?
            .into_inner();
        while let Some(line) = stream.next().await {
            line?;
        }
        job = c
            .get_job(proto::GetJobRequest { id: job.id.clone() })
            .await?
            .into_inner();
        if !is_finished(&job) {
            // The follow ended early (the coordinator is stopping): look
            // again shortly rather than spin.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_reads_ids_from_stdin_among_the_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut input = "a\n\n  b c\n".as_bytes();
        let ids = expand(&args(&["x", "-", "y"]), &mut input).unwrap();
        assert_eq!(ids, ["x", "a", "b", "c", "y"]);
        let twice = expand(&args(&["-", "-"]), &mut "".as_bytes()).unwrap_err();
        assert!(twice.to_string().contains("twice"), "{twice}");
        let mut repeated = "a b a\nc a".as_bytes();
        let ids = expand(&args(&["c", "-"]), &mut repeated).unwrap();
        assert_eq!(ids, ["c", "a", "b"], "each id once, first place kept");
    }
}
