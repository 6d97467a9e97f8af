//! Conversions between the wire types of a job and the runner's.

use super::record::Report;
use crate::grpc::Secret;
use crate::proto::{self, FinishJobRequest, JobOffer, JobOutcome, JobType};
use crate::runner::{self, Build, JobKind, Outcome, Parameter, Transition, Variable};

/// The runner's job for an offer and the input fetched for it (checked
/// against the offer); an error (an offer this daemon cannot run) becomes
/// the job's failure message.
pub(super) fn job_from_offer(
    offer: JobOffer,
    template_archive: Vec<u8>,
    state: Vec<u8>,
) -> Result<runner::Job, String> {
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
                state,
                build_id: b.build_id,
                prebuild_claim: b.prebuild_claim,
            })
        }
        _ => {
            return Err(format!(
                "run job {id}: unsupported job type {}",
                offer.r#type
            ));
        }
    };
    let parameters = |wire: Vec<proto::Parameter>| -> Vec<Parameter> {
        wire.into_iter()
            .map(|p| Parameter {
                name: p.name,
                value: p.value,
            })
            .collect()
    };
    Ok(runner::Job {
        id: offer.job_id,
        kind,
        template_archive,
        template_name: offer.template_name,
        template_version_id: offer.template_version_id,
        template_version_name: offer.template_version_name,
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
        parameters: parameters(offer.parameters),
        previous_parameters: parameters(offer.previous_parameters),
    })
}

pub(super) fn finish_request(
    job_id: &str,
    secret: &Secret,
    outcome: Outcome,
    log_count: u64,
) -> Report {
    let (outcome, error, state, variables, replacements) = match outcome {
        Outcome::Succeeded {
            state,
            variables,
            replacements,
        } => (
            JobOutcome::Succeeded,
            String::new(),
            state,
            variables,
            replacements,
        ),
        Outcome::Failed { error, state } => {
            (JobOutcome::Failed, error, state, Vec::new(), Vec::new())
        }
        Outcome::Canceled { error, state } => {
            (JobOutcome::Canceled, error, state, Vec::new(), Vec::new())
        }
    };
    let header = FinishJobRequest {
        job_id: job_id.to_string(),
        outcome: outcome as i32,
        error,
        has_state: state.is_some(),
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
        replacements,
        job_secret: secret.expose().to_string(),
        ..Default::default()
    };
    Report { header, state }
}

pub(super) fn job_type_name(ty: i32) -> &'static str {
    match JobType::try_from(ty) {
        Ok(JobType::TemplateImport) => "template_import",
        Ok(JobType::WorkspaceBuild) => "workspace_build",
        _ => "unknown",
    }
}

pub(super) fn outcome_name(o: &Outcome) -> &'static str {
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
            parameters: vec![proto::Parameter {
                name: "region".into(),
                value: "us".into(),
            }],
            previous_parameters: vec![proto::Parameter {
                name: "region".into(),
                value: "eu".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn offers_convert_to_runner_jobs() {
        let job = job_from_offer(
            offer(JobType::TemplateImport, None),
            b"tar".to_vec(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(job.template_archive, b"tar");
        assert!(matches!(job.kind, JobKind::TemplateImport));
        assert_eq!(
            (job.variables[0].name.as_str(), job.variables[0].sensitive),
            ("region", true)
        );

        let build = WorkspaceBuild {
            workspace_name: "ws".into(),
            transition: proto::Transition::Destroy as i32,
            ..Default::default()
        };
        let job = job_from_offer(
            offer(JobType::WorkspaceBuild, Some(build)),
            Vec::new(),
            b"{}".to_vec(),
        )
        .unwrap();
        let param = |name: &str, value: &str| Parameter {
            name: name.into(),
            value: value.into(),
        };
        assert_eq!(job.parameters, vec![param("region", "us")]);
        assert_eq!(job.previous_parameters, vec![param("region", "eu")]);
        let JobKind::WorkspaceBuild(b) = job.kind else {
            panic!("not a build")
        };
        assert_eq!(
            (b.transition, b.workspace_name.as_str(), b.state.as_slice()),
            (Transition::Destroy, "ws", &b"{}"[..])
        );

        let err = job_from_offer(offer(JobType::WorkspaceBuild, None), vec![], vec![]).unwrap_err();
        assert!(err.starts_with("run job j1:"), "{err}");
        let err = job_from_offer(offer(JobType::Unspecified, None), vec![], vec![]).unwrap_err();
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
        let secret = Secret::new("pdj_j1");
        let Report { header: req, state } = finish_request(
            "j1",
            &secret,
            Outcome::Succeeded {
                state: None,
                variables: vars,
                replacements: vec!["terraform_data.a".into()],
            },
            7,
        );
        assert_eq!(state, None);
        assert_eq!(req.replacements, ["terraform_data.a"]);
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

        assert_eq!(req.job_secret, "pdj_j1");

        let Report { header: req, state } = finish_request(
            "j1",
            &secret,
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
                state.as_deref(),
                req.error.as_str()
            ),
            (
                JobOutcome::Canceled as i32,
                true,
                Some(&b"s"[..]),
                "canceled"
            )
        );
    }
}
