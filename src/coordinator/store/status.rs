//! A job's status: the `jobs.status` column, the CLI's `--status` and the
//! `Job.status` string all spell it the same (the column is TEXT, its
//! values unchanged since the first release).

use std::fmt;
use std::str::FromStr;

use super::db::{FromSql, ToSql, ValueRef};

/// pending → running (acknowledged) → succeeded | failed | canceled; an
/// operator's cancel turns a running job `canceling` until its daemon
/// reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Canceling,
    Succeeded,
    Failed,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Canceling,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Canceling => "canceling",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Ended for good: no daemon runs it and none will.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// Acknowledged by its daemon and not ended (running or canceling).
    pub fn is_running(self) -> bool {
        matches!(self, JobStatus::Running | JobStatus::Canceling)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<JobStatus, String> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                format!("status {s:?} is not one of {}", all.join(", "))
            })
    }
}

impl ToSql for JobStatus {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self.as_str())
    }
}

impl FromSql for JobStatus {
    fn from_sql(value: ValueRef<'_>) -> Result<JobStatus, String> {
        match value {
            ValueRef::Text(s) => s.parse(),
            v => Err(format!("expected a job status, found {v:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_as_itself() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(
            "done".parse::<JobStatus>().unwrap_err(),
            "status \"done\" is not one of pending, running, canceling, succeeded, failed, canceled"
        );
    }
}
