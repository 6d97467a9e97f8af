//! Where the tests find the tools the scripts install: the project's own
//! terraform and the CLI config serving the stand-in coder provider. Shared
//! by the e2e harness (`common`) and the runner harness (`runner_support`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `var` if set, else `default` under the project root; panics naming the
/// script that installs it when missing.
fn installed(var: &str, default: &str, what: &str, script: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(default));
    assert!(
        path.is_file(),
        "{what} not found at {}: run {script} (or set {var})",
        path.display()
    );
    path
}

/// The terraform under test: `PROVISIONERD_TEST_TERRAFORM`, else the
/// project-local install.
pub fn terraform() -> PathBuf {
    installed(
        "PROVISIONERD_TEST_TERRAFORM",
        ".tools/terraform/bin/terraform",
        "terraform",
        "scripts/install-terraform.sh",
    )
}

/// The CLI config that serves the stand-in coder provider from its mirror:
/// `PROVISIONERD_TEST_TF_CLI_CONFIG`, else the project-local install.
pub fn coder_cli_config() -> PathBuf {
    installed(
        "PROVISIONERD_TEST_TF_CLI_CONFIG",
        ".tools/coder-provider.tfrc",
        "coder provider CLI config",
        "scripts/install-coder-provider.sh",
    )
}
