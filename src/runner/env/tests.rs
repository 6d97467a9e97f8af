use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::runner::{Build, Parameter};

/// sha256("region") and sha256("Region name"), as `printf … | sha256sum`
/// prints them.
const REGION: &str = "c697d2981bf416569a16cfbcdec1542b5398f3cc77d2b905819aa99c46ecf6f6";
const REGION_NAME: &str = "4039aa1eb9c1e71b726b0367724c0b61f8196c6786bccd1bbf1e87a32c4dca77";

fn cfg() -> RunnerConfig {
    RunnerConfig {
        terraform_path: PathBuf::from("/bin/terraform"),
        work_root: PathBuf::from("/work"),
        plugin_cache_dir: PathBuf::from("/cache/plugins"),
        cancel_grace: Duration::from_secs(1),
        force_kill: CancellationToken::new(),
        archive_limits: Default::default(),
        observer: Default::default(),
    }
}

fn param(name: &str, value: &str) -> Parameter {
    Parameter {
        name: name.into(),
        value: value.into(),
    }
}

fn job(kind: JobKind) -> Job {
    Job {
        id: "job-1".into(),
        kind,
        template_archive: Vec::new(),
        template_name: "docker".into(),
        template_version_id: "tv-7".into(),
        template_version_name: String::new(),
        initiator: "alice".into(),
        variables: Vec::new(),
        parameters: Vec::new(),
        previous_parameters: Vec::new(),
    }
}

fn build(owner: &str, transition: Transition) -> JobKind {
    JobKind::WorkspaceBuild(Build {
        workspace_id: "ws-1".into(),
        workspace_name: "dev".into(),
        owner: owner.into(),
        transition,
        state: Vec::new(),
        build_id: "build-9".into(),
        prebuild_claim: false,
    })
}

fn daemon_env() -> Vec<(OsString, OsString)> {
    [
        ("PATH", "/usr/bin"),
        ("HOME", "/root"),
        ("TF_CLI_CONFIG_FILE", "/etc/mirror.tfrc"),
        ("PROVISIONERD_KEY", "secret"),
        ("CODER_AGENT_TOKEN", "stale"),
        ("CODER_PARAMETER_deadbeef", "stale"),
        ("CODER_WORKSPACE_NAME", "stale"),
        ("TF_INPUT", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect()
}

/// The environment as sorted `KEY=value` strings.
fn render(env: Vec<(OsString, OsString)>) -> Vec<String> {
    env.into_iter()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect()
}

#[test]
fn a_build_gets_exactly_the_contract_variables() {
    let mut j = job(build("alice", Transition::Start));
    j.parameters = vec![param("region", "us"), param("Region name", "North")];
    j.previous_parameters = vec![param("region", "eu")];
    let env = render(environment(daemon_env(), &cfg(), &j));
    let want = [
        "CHECKPOINT_DISABLE=1".to_string(),
        format!("CODER_PARAMETER_{REGION_NAME}=North"),
        format!("CODER_PARAMETER_PREVIOUS_{REGION}=eu"),
        format!("CODER_PARAMETER_{REGION}=us"),
        "CODER_WORKSPACE_BUILD_ID=build-9".into(),
        "CODER_WORKSPACE_ID=ws-1".into(),
        "CODER_WORKSPACE_NAME=dev".into(),
        "CODER_WORKSPACE_OWNER=alice".into(),
        "CODER_WORKSPACE_OWNER_GROUPS=[]".into(),
        format!(
            "CODER_WORKSPACE_OWNER_ID={}",
            super::stable_id("owner", "alice")
        ),
        "CODER_WORKSPACE_OWNER_NAME=alice".into(),
        "CODER_WORKSPACE_OWNER_RBAC_ROLES=[]".into(),
        format!(
            "CODER_WORKSPACE_TEMPLATE_ID={}",
            super::stable_id("template", "docker")
        ),
        "CODER_WORKSPACE_TEMPLATE_NAME=docker".into(),
        "CODER_WORKSPACE_TEMPLATE_VERSION=tv-7".into(),
        "CODER_WORKSPACE_TRANSITION=start".into(),
        "HOME=/root".into(),
        "PATH=/usr/bin".into(),
        "TF_CLI_CONFIG_FILE=/etc/mirror.tfrc".into(),
        "TF_INPUT=0".into(),
        "TF_IN_AUTOMATION=1".into(),
        "TF_PLUGIN_CACHE_DIR=/cache/plugins".into(),
    ];
    assert_eq!(env, want);
}

#[test]
fn prebuilds_and_transitions() {
    let env = render(environment(
        daemon_env(),
        &cfg(),
        &job(build("prebuilds", Transition::Stop)),
    ));
    assert!(env.contains(&"CODER_WORKSPACE_IS_PREBUILD=true".to_string()));
    assert!(env.contains(&"CODER_WORKSPACE_TRANSITION=stop".to_string()));

    let env = render(environment(
        daemon_env(),
        &cfg(),
        &job(build("alice", Transition::Destroy)),
    ));
    assert!(env.contains(&"CODER_WORKSPACE_TRANSITION=destroy".to_string()));
    assert!(
        !env.iter()
            .any(|v| v.starts_with("CODER_WORKSPACE_IS_PREBUILD"))
    );
}

#[test]
fn a_claim_build_says_claim_and_not_prebuild() {
    let mut kind = build("alice", Transition::Start);
    if let JobKind::WorkspaceBuild(b) = &mut kind {
        b.prebuild_claim = true;
    }
    let env = render(environment(daemon_env(), &cfg(), &job(kind)));
    assert!(env.contains(&"CODER_WORKSPACE_IS_PREBUILD_CLAIM=true".to_string()));
    assert!(env.contains(&"CODER_WORKSPACE_OWNER=alice".to_string()));
    assert!(!env.contains(&"CODER_WORKSPACE_IS_PREBUILD=true".to_string()));
}

#[test]
fn an_import_gets_no_coder_variables_and_no_daemon_settings() {
    let env = render(environment(
        daemon_env(),
        &cfg(),
        &job(JobKind::TemplateImport),
    ));
    assert!(
        !env.iter()
            .any(|v| v.starts_with("CODER_") || v.starts_with("PROVISIONERD_")),
        "{env:#?}"
    );
    assert!(env.contains(&"TF_CLI_CONFIG_FILE=/etc/mirror.tfrc".to_string()));
    assert!(env.contains(&"TF_PLUGIN_CACHE_DIR=/cache/plugins".to_string()));
}

#[test]
fn parameter_names_hash_to_lowercase_sha256_hex() {
    assert_eq!(
        parameter_var("CODER_PARAMETER_", "region"),
        format!("CODER_PARAMETER_{REGION}")
    );
    // Empty and non-ASCII names hash like any other bytes.
    assert_eq!(
        parameter_var("P_", ""),
        "P_e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(parameter_var("", "é").len(), 64);
}

#[test]
fn owner_and_template_ids_are_stable_uuids_distinct_per_name() {
    let a = super::stable_id("owner", "alice");
    assert_eq!(a, super::stable_id("owner", "alice"), "same on every build");
    assert_ne!(a, super::stable_id("owner", "bob"));
    assert_ne!(a, super::stable_id("template", "alice"));
    assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
}
