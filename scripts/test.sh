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

# The whole suite on SQLite (the replica tests start PostgreSQL servers of
# their own), then the store and the routing, claim, priority, lifecycle,
# fault and template-version tests again on PostgreSQL: one throwaway server (see
# scripts/postgres.sh), each test in a schema of its own.
PG_TESTS='(kind(lib) & test(/^coordinator::(store|dispatch)::/)) | (binary(e2e) & test(/^(routing|claim|queue|lifecycle|faults|workspace|cancel|prebuilds|offers|finish_commit|replace|versions)::/))'
if cargo nextest --version >/dev/null 2>&1; then
  status=0
  cargo nextest run --locked --no-fail-fast "$@" || status=$?
  pg_dir=$(mktemp -d)
  trap 'scripts/postgres.sh stop "$pg_dir" >/dev/null 2>&1 || true; rm -rf "$pg_dir"' EXIT
  PROVISIONERD_TEST_DATABASE_URL=$(scripts/postgres.sh start "$pg_dir" | tail -n 1)
  export PROVISIONERD_TEST_DATABASE_URL
  echo "--- the same tests on PostgreSQL ($PROVISIONERD_TEST_DATABASE_URL)"
  cargo nextest run --locked --no-fail-fast -E "$PG_TESTS" "$@" || status=$?
  exit $status
else
  cargo test --locked --no-fail-fast "$@"
fi
