#!/usr/bin/env bash
# Runs the whole test suite: installs the project's own Terraform first (see
# install-terraform.sh), then unit, integration and end-to-end tests with
# cargo-nextest (falling back to cargo test where nextest is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

tf=$(scripts/install-terraform.sh | tail -n 1)
export PROVISIONERD_TEST_TERRAFORM="$tf"
echo "terraform: $tf ($("$tf" version | head -n 1))"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
