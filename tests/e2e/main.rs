//! End-to-end tests: a real coordinator on port 0, real daemons, real
//! terraform. One test binary (linking is the slow part of a test build).

#[path = "../common/mod.rs"]
mod common;

// The runner harness, for handing archives to the runner directly; it
// brings its own copy of `tools` (as `common` does), which is harmless.
#[allow(clippy::duplicate_mod)]
#[path = "../runner_support/mod.rs"]
mod runner_support;

mod archives;
mod authz;
mod bounds;
mod cancel;
mod claim;
mod cli;
mod cluster;
mod connections;
mod datadir;
mod failover;
mod faults;
mod finish_commit;
mod large;
mod lifecycle;
mod offers;
mod ops_coordinator;
mod ops_daemon;
mod prebuilds;
mod queue;
mod raw;
mod replace;
mod replica_events;
mod replicas;
mod routing;
mod secrets;
mod templates;
mod tls;
mod versions;
mod workspace;

use std::path::Path;

/// Writes `main.tf` with `body` into a new directory under `root`.
pub fn template(root: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), body).unwrap();
    dir
}

/// A template whose apply takes no time and prints one line.
pub const QUICK: &str = r#"
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "echo built $CODER_WORKSPACE_NAME"
  }
}
"#;
