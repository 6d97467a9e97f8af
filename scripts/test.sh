#!/usr/bin/env bash
# Runs the whole test suite: installs the project's own Terraform and the
# stand-in coder provider first (see install-terraform.sh and
# install-coder-provider.sh), then unit, integration and end-to-end tests
# with cargo-nextest (falling back to cargo test where nextest is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

tf=$(scripts/install-terraform.sh | tail -n 1)
export PROVISIONERD_TEST_TERRAFORM="$tf"
echo "terraform: $tf ($("$tf" version | head -n 1))"

# A CLI config serving coder/coder from a local mirror; the tests that run
# Coder-style templates hand it to terraform as TF_CLI_CONFIG_FILE.
started=$SECONDS
tfrc=$(scripts/install-coder-provider.sh | tail -n 1)
export PROVISIONERD_TEST_TF_CLI_CONFIG="$tfrc"
echo "coder provider: $tfrc ($((SECONDS - started)) s)"
# Its own unit tests, in release mode so they reuse the build just made.
cargo test --release --locked --quiet -p coder-provider

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
