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

/// `Debug` for `$msg`: the fields listed, in order, as prost shows them,
/// then the job secret redacted. A field the proto gains goes in its
/// message's list below.
macro_rules! debug_with_secret {
    ($($msg:ident { $($field:ident),* $(,)? })*) => {$(
        impl fmt::Debug for $msg {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($msg))
                    $(.field(stringify!($field).trim_start_matches("r#"), &self.$field))*
                    .field("job_secret", &Redacted(&self.job_secret))
                    .finish()
            }
        }
    )*};
}

debug_with_secret! {
    JobOffer {
        job_id, r#type, created_at, initiator, tags, template_archive_size,
        template_archive_sha256, template_name, template_version_id, variables,
        workspace_build, parameters, previous_parameters,
    }
    AckJob { job_id }
    UpdateJobRequest { job_id, logs }
    GetJobInputRequest { job_id }
    FinishJobRequest {
        job_id, outcome, error, has_state, variables, log_count, state_size,
        state_sha256, replacements,
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
