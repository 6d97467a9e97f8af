//! Templates: push (a streamed archive, checked and read without
//! terraform before anything is stored) and get.

use std::collections::BTreeMap;

use tonic::Streaming;

use super::{AdminApi, DEFAULT_OWNER, check_name};
use crate::archive;
use crate::coordinator::bounds;
use crate::coordinator::error::{CoordError, Result};
use crate::coordinator::store;
use crate::coordinator::templates;
use crate::coordinator::transfer;
use crate::grpc::limits::{MAX_META_BYTES, MAX_VERSION_MESSAGE_BYTES};
use crate::proto;

/// A pushed archive must pass the daemon's own extraction checks within
/// `limits` (its size first, before anything is parsed or stored) and hold
/// at least one `.tf` or `.tf.json` file at its root; anything else could
/// never import.
fn check_template(archive: &[u8], limits: &archive::Limits) -> std::result::Result<(), String> {
    archive::check(archive, limits).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(archive);
    let mut has_tf = false;
    for entry in ar.entries().map_err(|e| format!("read archive: {e}"))? {
        let entry = entry.map_err(|e| format!("read archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("read archive entry: {e}"))?;
        let name = path.to_string_lossy();
        let name = name.strip_prefix("./").unwrap_or(&name);
        has_tf |= !name.contains('/') && (name.ends_with(".tf") || name.ends_with(".tf.json"));
    }
    if has_tf {
        Ok(())
    } else {
        Err("archive has no .tf or .tf.json file at its root".into())
    }
}

pub(super) async fn push(
    api: &AdminApi,
    stream: Streaming<proto::PushTemplatePart>,
) -> Result<proto::PushTemplateResponse> {
    // Counted as the chunks arrive: an archive over the limit is refused
    // before the rest is read, and nothing is stored unless it is whole.
    let (req, archive) = transfer::read_push(stream, api.archive_limits.max_archive_bytes).await?;
    check_name("template", &req.name)?;
    let action = format!("push template {:?}", req.name);
    if !req.version_name.is_empty() {
        // Before the archive is read: a bad name wastes no parse.
        store::check_version_name(&req.version_name)
            .map_err(|e| CoordError::Invalid(format!("{action}: {e}")))?;
    }
    let tags = bounds::tags(&action, &req.provisioner_tags)?;
    bounds::values(&action, "variables", &req.variables)?;
    // Checked and read without terraform: a template whose parameters,
    // presets or tags are wrong is refused now, with the file and line.
    // CPU work on a hostile archive (links to resolve, HCL to parse)
    // runs off the async workers.
    // The tags' evaluation (locals, functions) is CPU work on the
    // template's terms too.
    let (name, limits) = (req.name.clone(), api.archive_limits);
    let vars: BTreeMap<String, String> = req.variables.into_iter().collect();
    let (archive, meta, vars, import_tags) = tokio::task::spawn_blocking({
        let tags = tags.clone();
        move || {
            check_template(&archive, &limits)
                .map_err(|e| CoordError::Invalid(format!("push template {name:?}: {e}")))?;
            let meta = templates::read(&name, &archive, &limits)?;
            let import_tags = templates::import_tags(&name, &meta, &vars, &tags)?;
            Ok::<_, CoordError>((archive, meta, vars, import_tags))
        }
    })
    .await
    .map_err(|e| CoordError::Internal(format!("push template {:?}: check: {e}", req.name)))??;
    let meta_json = templates::meta_json(&meta)?;
    if meta_json.len() > MAX_META_BYTES {
        return Err(CoordError::Invalid(format!(
            "push template {:?}: its metadata (variables, parameters, presets, README) \
             is {} bytes, over the limit of {MAX_META_BYTES} bytes",
            req.name,
            meta_json.len()
        )));
    }
    bounds::text(&action, "message", &req.message, MAX_VERSION_MESSAGE_BYTES)?;
    let import = store::NewImport {
        meta_json: Some(meta_json),
        tags: import_tags,
        version: store::NewVersion {
            name: (!req.version_name.is_empty()).then(|| req.version_name.clone()),
            message: req.message,
            keep_inactive: req.no_activate,
        },
    };
    let name = req.name.clone();
    let pushed = api
        .hub
        .store
        .call(move |s| s.push_version(&name, &archive, &tags, &vars, DEFAULT_OWNER, &import))
        .await?;
    api.hub.kick();
    Ok(proto::PushTemplateResponse {
        template_version_id: pushed.version_id,
        job_id: pushed.job_id,
        template_version_name: pushed.version_name,
    })
}

pub(super) fn get(api: &AdminApi, req: proto::GetTemplateRequest) -> Result<proto::TemplateDetail> {
    let name = req.name;
    let template = api.hub.store.template(&name)?;
    let latest = api.hub.store.latest_version(&name)?;
    Ok(proto::TemplateDetail {
        name,
        active_version_id: template.active_version_id.unwrap_or_default(),
        active_version_name: template.active_version_name.unwrap_or_default(),
        latest_version_name: latest.name,
        latest_version_id: latest.id,
        meta_json: latest.meta_json.unwrap_or_default(),
    })
}
