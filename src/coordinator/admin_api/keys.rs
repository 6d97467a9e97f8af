//! Provisioner keys: create (the secret is shown once) and delete (its
//! daemons' sessions end).

use super::{AdminApi, check_name, convert};
use crate::coordinator::auth;
use crate::coordinator::bounds;
use crate::coordinator::error::Result;
use crate::proto;

pub(super) fn create(
    api: &AdminApi,
    req: proto::CreateKeyRequest,
) -> Result<proto::CreateKeyResponse> {
    check_name("key", &req.name)?;
    let tags = bounds::tags(&format!("create key {:?}", req.name), &req.tags)?;
    let secret = auth::new_secret("pdk_");
    let key = api
        .hub
        .store
        .create_key(&req.name, &auth::hash(&secret), &tags)?;
    Ok(proto::CreateKeyResponse {
        secret,
        key: Some(convert::key(key)),
    })
}

pub(super) fn delete(
    api: &AdminApi,
    req: proto::DeleteKeyRequest,
) -> Result<proto::DeleteKeyResponse> {
    let name = req.name;
    api.hub.store.delete_key(&name)?;
    api.hub.disconnect_key(&name);
    Ok(proto::DeleteKeyResponse {})
}
