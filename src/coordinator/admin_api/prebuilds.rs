//! The prebuild reconciler's controls: pause, resume, status, reset.

use super::AdminApi;
use crate::coordinator::error::{CoordError, Result};
use crate::coordinator::prebuilds;
use crate::proto;

pub(super) async fn set_paused(api: &AdminApi, paused: bool) -> Result<proto::PrebuildStatus> {
    let action = if paused { "pause" } else { "resume" };
    // Waits for an acting reconcile pass: off the async workers.
    let hub = api.hub.clone();
    tokio::task::spawn_blocking(move || prebuilds::set_paused(&hub, paused))
        .await
        .map_err(|e| CoordError::Internal(format!("{action} prebuilds: {e}")))?
}

pub(super) fn status(api: &AdminApi) -> Result<proto::PrebuildStatus> {
    prebuilds::status(&api.hub)
}

pub(super) async fn reset(
    api: &AdminApi,
    r: proto::ResetPrebuildsRequest,
) -> Result<proto::PrebuildStatus> {
    // Reads templates and writes the store: off the async workers.
    let hub = api.hub.clone();
    tokio::task::spawn_blocking(move || prebuilds::reset(&hub, &r.template, &r.preset))
        .await
        .map_err(|e| CoordError::Internal(format!("reset prebuilds: {e}")))?
}
