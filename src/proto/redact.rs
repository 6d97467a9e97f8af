//! `Debug` for the messages that carry a job secret (`build.rs` skips
//! prost's): every field as prost would show it, except the secret, which
//! shows only whether one is there. A request printed while debugging, or
//! inside a panic message, must not hand the job to whoever reads the log.

use std::fmt;

use super::{AckJob, FinishJobRequest, GetJobInputRequest, JobOffer, UpdateJobRequest};

/// A job secret in a `Debug` output.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

impl fmt::Debug for JobOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobOffer")
            .field("job_id", &self.job_id)
            .field("type", &self.r#type)
            .field("created_at", &self.created_at)
            .field("initiator", &self.initiator)
            .field("tags", &self.tags)
            .field("template_archive_size", &self.template_archive_size)
            .field("template_archive_sha256", &self.template_archive_sha256)
            .field("template_name", &self.template_name)
            .field("template_version_id", &self.template_version_id)
            .field("variables", &self.variables)
            .field("workspace_build", &self.workspace_build)
            .field("parameters", &self.parameters)
            .field("previous_parameters", &self.previous_parameters)
            .field("job_secret", &Redacted(&self.job_secret))
            .finish()
    }
}

impl fmt::Debug for AckJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckJob")
            .field("job_id", &self.job_id)
            .field("job_secret", &Redacted(&self.job_secret))
            .finish()
    }
}

impl fmt::Debug for UpdateJobRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateJobRequest")
            .field("job_id", &self.job_id)
            .field("logs", &self.logs)
            .field("job_secret", &Redacted(&self.job_secret))
            .finish()
    }
}

impl fmt::Debug for GetJobInputRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetJobInputRequest")
            .field("job_id", &self.job_id)
            .field("job_secret", &Redacted(&self.job_secret))
            .finish()
    }
}

impl fmt::Debug for FinishJobRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinishJobRequest")
            .field("job_id", &self.job_id)
            .field("outcome", &self.outcome)
            .field("error", &self.error)
            .field("has_state", &self.has_state)
            .field("variables", &self.variables)
            .field("log_count", &self.log_count)
            .field("state_size", &self.state_size)
            .field("state_sha256", &self.state_sha256)
            .field("replacements", &self.replacements)
            .field("job_secret", &Redacted(&self.job_secret))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CoordinatorMessage, DaemonMessage, FinishJobPart};
    use super::super::{coordinator_message, daemon_message, finish_job_part};
    use super::*;

    const SECRET: &str = "pdj_0123456789abcdef";

    #[test]
    fn no_debug_output_shows_a_job_secret() {
        let offer = JobOffer {
            job_id: "j".into(),
            template_name: "t".into(),
            job_secret: SECRET.into(),
            ..Default::default()
        };
        let header = FinishJobRequest {
            job_id: "j".into(),
            error: "boom".into(),
            job_secret: SECRET.into(),
            ..Default::default()
        };
        let shown = [
            format!(
                "{:?}",
                CoordinatorMessage {
                    msg: Some(coordinator_message::Msg::JobOffer(offer.clone())),
                }
            ),
            format!(
                "{:?}",
                DaemonMessage {
                    msg: Some(daemon_message::Msg::AckJob(AckJob {
                        job_id: "j".into(),
                        job_secret: SECRET.into(),
                    })),
                }
            ),
            format!(
                "{:?}",
                UpdateJobRequest {
                    job_id: "j".into(),
                    logs: Vec::new(),
                    job_secret: SECRET.into(),
                }
            ),
            format!(
                "{:?}",
                GetJobInputRequest {
                    job_id: "j".into(),
                    job_secret: SECRET.into(),
                }
            ),
            format!(
                "{:?}",
                FinishJobPart {
                    part: Some(finish_job_part::Part::Header(header)),
                }
            ),
        ];
        for s in shown {
            assert!(!s.contains(SECRET), "{s}");
            assert!(s.contains("job_secret: <redacted>"), "{s}");
            assert!(s.contains("job_id: \"j\""), "the other fields stay: {s}");
        }
        assert!(format!("{offer:?}").contains("template_name: \"t\""));
        let none = GetJobInputRequest::default();
        assert!(format!("{none:?}").contains("job_secret: \"\""));
    }
}
