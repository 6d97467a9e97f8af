//! Template versions on `/metrics`: which version of each template is
//! active, and how many live workspaces each version has — what an
//! operator watches during a rollout or a rollback (workspaces with
//! `automatic_updates = never` stay on their version until updated).

use prometheus_client::encoding::DescriptorEncoder;

use super::{Labels, gauges};
use crate::coordinator::store::VersionCount;

fn labels(c: &VersionCount) -> Labels {
    vec![
        ("template_name", c.template.clone()),
        ("template_version_id", c.version_id.clone()),
        ("template_version_name", c.version_name.clone()),
    ]
}

pub(super) fn encode(e: &mut DescriptorEncoder, counts: &[VersionCount]) -> std::fmt::Result {
    gauges(
        e,
        "provisionerd_coordinator_template_active_version_info",
        "1 for each template's active version (the one new workspaces and prebuild pools use).",
        counts.iter().filter(|c| c.active).map(|c| (labels(c), 1)),
    )?;
    gauges(
        e,
        "provisionerd_coordinator_workspaces",
        "Live workspaces by template version (every active version is listed, with 0 if none).",
        counts.iter().map(|c| (labels(c), c.workspaces as i64)),
    )
}
