#!/usr/bin/env bash
# A real local stack in one command: installs Terraform (project-local),
# builds provisionerd, starts a coordinator and one daemon, pushes the
# example template, builds a workspace and shows its logs and outputs.
#
#   scripts/demo.sh           run the demo, then stop everything
#   scripts/demo.sh --keep    leave coordinator and daemon running
#   scripts/demo.sh --prebuilds   prebuilt workspaces: a pool fills, a person
#                                 claims one (scripts/demo-prebuilds.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prebuilds" ]; then exec scripts/demo-prebuilds.sh; fi
root=$(pwd)
keep=${1:-}

tf=$(scripts/install-terraform.sh | tail -n 1)
echo "==> terraform: $tf"
cargo build --quiet --locked
bin=$root/target/debug/provisionerd

data=$root/demo-data
rm -rf "$data"
mkdir -p "$data"
coord_pid=""
daemon_pid=""
cleanup() {
  [ "$keep" = "--keep" ] && return
  # SIGHUP drains the daemon (it finishes any job, then exits 0); then the
  # coordinator stops on SIGTERM.
  if [ -n "$daemon_pid" ]; then
    echo "==> draining the daemon (SIGHUP) and stopping the coordinator"
    kill -HUP "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true
  fi
  if [ -n "$coord_pid" ]; then kill -TERM "$coord_pid" 2>/dev/null || true; wait "$coord_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

echo "==> starting coordinator (data in $data)"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data/coordinator" 2>"$data/coordinator.log" &
coord_pid=$!
for _ in $(seq 100); do [ -s "$data/coordinator/address" ] && [ -s "$data/coordinator/admin-token" ] && break; sleep 0.1; done
export PROVISIONERD_URL=$(cat "$data/coordinator/address")
export PROVISIONERD_TOKEN_FILE=$data/coordinator/admin-token
echo "    listening on $PROVISIONERD_URL"

echo "==> creating a provisioner key and starting a daemon"
key=$("$bin" keys create demo-key 2>/dev/null)
echo "    key demo-key created (its secret goes to the daemon's environment)"
PROVISIONERD_KEY=$key "$bin" start --name demo-daemon --cache-dir "$data/cache" \
  --terraform-path "$tf" 2>"$data/daemon.log" &
daemon_pid=$!

echo "==> pushing examples/templates/basic (import job: terraform init, validate, plan)"
"$bin" templates push basic --dir examples/templates/basic --wait

echo "==> creating workspace 'dev' (build job: terraform plan + apply)"
"$bin" workspaces create dev --template basic --var region=us-east-2 --wait

echo "==> daemons"
"$bin" daemons list
echo "==> jobs"
"$bin" jobs list

if [ "$keep" = "--keep" ]; then
  echo
  echo "Still running. Try:"
  echo "  export PROVISIONERD_URL=$PROVISIONERD_URL PROVISIONERD_TOKEN_FILE=$PROVISIONERD_TOKEN_FILE"
  echo "  $bin workspaces stop dev --wait"
  echo "Logs: $data/coordinator.log $data/daemon.log"
  echo "Stop: kill -HUP $daemon_pid   (drains the daemon), then kill -TERM $coord_pid   (coordinator)"
fi
