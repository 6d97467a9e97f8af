//! The store's offer as the daemon protocol's `JobOffer`: the one place
//! that conversion happens.

use crate::coordinator::store::{JobKind, Offer};
use crate::proto;

pub(super) fn offer(o: Offer) -> proto::JobOffer {
    let ty = match o.kind {
        JobKind::TemplateImport => proto::JobType::TemplateImport,
        JobKind::WorkspaceBuild(_) => proto::JobType::WorkspaceBuild,
    };
    let pairs = |m: std::collections::BTreeMap<String, String>| {
        m.into_iter()
            .map(|(name, value)| proto::Parameter { name, value })
            .collect()
    };
    proto::JobOffer {
        r#type: ty as i32,
        created_at: o.created_at,
        initiator: o.initiator,
        tags: o.tags.into_iter().collect(),
        template_archive_size: o.archive.size,
        template_archive_sha256: o.archive.sha256,
        template_name: o.template_name,
        template_version_id: o.template_version_id,
        template_version_name: o.template_version_name,
        variables: (o.variables.into_iter())
            .map(|v| proto::VariableValue {
                name: v.name,
                value: v.value,
                sensitive: v.sensitive,
            })
            .collect(),
        workspace_build: o.build.map(|b| proto::WorkspaceBuild {
            workspace_id: b.workspace_id,
            workspace_name: b.workspace_name,
            owner: b.owner,
            transition: b.transition as i32,
            build_id: o.job_id.clone(),
            state_size: b.state.size,
            state_sha256: b.state.sha256,
            prebuild_claim: b.prebuild_claim,
        }),
        parameters: pairs(o.parameters),
        previous_parameters: pairs(o.previous_parameters),
        job_id: o.job_id,
        job_secret: o.secret.expose().to_string(),
    }
}
