//! terraform's environment: the daemon's own, minus its settings, plus
//! automation settings and the variables Coder's provider reads (the
//! environment contract: workspace, owner, template, build, parameters).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use sha2::{Digest, Sha256};

use super::{Job, JobKind, RunnerConfig, Transition};

/// The owner Coder's prebuilt workspaces belong to until someone claims
/// them.
const PREBUILDS_OWNER: &str = "prebuilds";

/// The environment every terraform command the daemon runs gets, a job's
/// or a probe's: the daemon's own (`daemon_env`) without its settings
/// (`PROVISIONERD_*`, which may hold credentials) and without any
/// `CODER_*` (credentials of a Coder deployment, or stale values that
/// would shadow the contract variables), plus the automation settings
/// (`TF_IN_AUTOMATION`, `CHECKPOINT_DISABLE`, `TF_INPUT=0`). Everything
/// else reaches terraform unchanged, including the operator's
/// `TF_CLI_CONFIG_FILE` (e.g. a provider mirror).
pub fn base_environment(
    daemon_env: impl IntoIterator<Item = (OsString, OsString)>,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = daemon_env
        .into_iter()
        .filter(|(key, _)| {
            let key = key.as_bytes();
            !key.starts_with(b"PROVISIONERD_") && !key.starts_with(b"CODER_")
        })
        .collect();
    for (key, value) in [
        ("TF_IN_AUTOMATION", "1"),
        ("CHECKPOINT_DISABLE", "1"),
        ("TF_INPUT", "0"),
    ] {
        env.insert(key.into(), value.into());
    }
    env
}

/// A job's environment: [`base_environment`], then, for workspace builds,
/// Coder's `CODER_WORKSPACE_*` variables, and for every parameter a job
/// carries `CODER_PARAMETER_<sha256 hex of the name>` (the previous
/// build's value in `CODER_PARAMETER_PREVIOUS_<…>`).
pub(super) fn environment(
    daemon_env: Vec<(OsString, OsString)>,
    cfg: &RunnerConfig,
    job: &Job,
) -> Vec<(OsString, OsString)> {
    let mut env = base_environment(daemon_env);
    let mut set = |key: &str, value: &str| {
        env.insert(key.into(), value.into());
    };
    if let JobKind::WorkspaceBuild(build) = &job.kind {
        let transition = match build.transition {
            Transition::Start => "start",
            Transition::Stop => "stop",
            Transition::Destroy => "destroy",
        };
        set("CODER_WORKSPACE_NAME", &build.workspace_name);
        set("CODER_WORKSPACE_ID", &build.workspace_id);
        // Coder passes the user name here and the display name in
        // _OWNER_NAME; a build knows only the user name, so both get it.
        set("CODER_WORKSPACE_OWNER", &build.owner);
        set("CODER_WORKSPACE_OWNER_NAME", &build.owner);
        // Stable ids: without them Coder's provider makes up a fresh owner
        // id every run, and templates that name or label resources with it
        // would replace those resources on every build.
        set(
            "CODER_WORKSPACE_OWNER_ID",
            &stable_id("owner", &build.owner),
        );
        set(
            "CODER_WORKSPACE_TEMPLATE_ID",
            &stable_id("template", &job.template_name),
        );
        // What provisionerd does not track: empty lists rather than unset
        // (the provider parses them as JSON).
        set("CODER_WORKSPACE_OWNER_GROUPS", "[]");
        set("CODER_WORKSPACE_OWNER_RBAC_ROLES", "[]");
        set("CODER_WORKSPACE_TRANSITION", transition);
        set("CODER_WORKSPACE_TEMPLATE_NAME", &job.template_name);
        // Coder passes the version's name; an older coordinator sends none.
        let version = if job.template_version_name.is_empty() {
            &job.template_version_id
        } else {
            &job.template_version_name
        };
        set("CODER_WORKSPACE_TEMPLATE_VERSION", version);
        set("CODER_WORKSPACE_BUILD_ID", &build.build_id);
        // Coder's provider contract: a claim build says so instead (its
        // owner is already the person).
        if build.prebuild_claim {
            set("CODER_WORKSPACE_IS_PREBUILD_CLAIM", "true");
        } else if build.owner == PREBUILDS_OWNER {
            set("CODER_WORKSPACE_IS_PREBUILD", "true");
        }
    }
    for param in &job.parameters {
        set(
            &parameter_var("CODER_PARAMETER_", &param.name),
            &param.value,
        );
    }
    for param in &job.previous_parameters {
        let key = parameter_var("CODER_PARAMETER_PREVIOUS_", &param.name);
        set(&key, &param.value);
    }
    env.insert(
        "TF_PLUGIN_CACHE_DIR".into(),
        cfg.plugin_cache_dir.clone().into_os_string(),
    );
    env.into_iter().collect()
}

/// A UUID that is the same for the same `kind` and `name` on every build
/// and every daemon (derived from a sha256; shaped as a UUID because the
/// provider's attributes are UUIDs).
fn stable_id(kind: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("provisionerd/{kind}/{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// `prefix` + the lowercase hex sha256 of `name`: any parameter name, even
/// one with spaces or dashes, becomes a valid variable name.
fn parameter_var(prefix: &str, name: &str) -> String {
    format!("{prefix}{}", hex::encode(Sha256::digest(name.as_bytes())))
}

#[cfg(test)]
mod tests;
