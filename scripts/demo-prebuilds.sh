#!/usr/bin/env bash
# `scripts/demo.sh --prebuilds`: prebuilt workspaces on a real local stack.
# Installs Terraform and the stand-in coder provider (project-local), builds
# provisionerd, starts a coordinator reconciling prebuilds every second, a
# general daemon and a prebuild-pool daemon (key tag is_prebuild=true),
# pushes examples/templates/prebuild-demo (a preset with a pool of one, a
# 5 s "VM"), waits for the pool to fill, lets alice claim the prebuild and
# bob build the same template afresh, and compares the two `--wait` creates.
# Stops everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tf=$(scripts/install-terraform.sh | tail -n 1)
echo "==> terraform: $tf"
echo "==> building the stand-in coder provider (scripts/install-coder-provider.sh)"
tfrc=$(scripts/install-coder-provider.sh 2>/dev/null | tail -n 1)
echo "    TF_CLI_CONFIG_FILE=$tfrc"
cargo build --quiet --locked --bin provisionerd
bin=$root/target/debug/provisionerd

data=$root/demo-data
rm -rf "$data"
mkdir -p "$data"
coord_pid="" general_pid="" pool_pid=""
cleanup() {
  # SIGHUP drains each daemon (it finishes any job, then exits 0); then the
  # coordinator stops on SIGTERM.
  echo "==> draining the daemons (SIGHUP) and stopping the coordinator"
  for pid in $general_pid $pool_pid; do kill -HUP "$pid" 2>/dev/null || true; done
  for pid in $general_pid $pool_pid; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$coord_pid" ]; then kill -TERM "$coord_pid" 2>/dev/null || true; wait "$coord_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> starting coordinator (prebuild reconciler every 1s; data in $data)"
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data/coordinator" \
  --prebuild-reconcile-interval 1s 2>"$data/coordinator.log" &
coord_pid=$!
for _ in $(seq 100); do [ -s "$data/coordinator/address" ] && [ -s "$data/coordinator/admin-token" ] && break; sleep 0.1; done
[ -s "$data/coordinator/address" ] || { echo "demo: the coordinator did not start (see $data/coordinator.log)" >&2; exit 1; }
export PROVISIONERD_URL=$(cat "$data/coordinator/address")
export PROVISIONERD_TOKEN_FILE=$data/coordinator/admin-token
echo "    listening on $PROVISIONERD_URL"

echo "==> keys and daemons: general-1 (no tags), pool-1 (is_prebuild=true)"
general_key=$("$bin" keys create general 2>/dev/null)
pool_key=$("$bin" keys create prebuild-pool --tag is_prebuild=true 2>/dev/null)
PROVISIONERD_KEY=$general_key TF_CLI_CONFIG_FILE=$tfrc "$bin" start --name general-1 \
  --cache-dir "$data/cache-general" --terraform-path "$tf" 2>"$data/general.log" &
general_pid=$!
PROVISIONERD_KEY=$pool_key TF_CLI_CONFIG_FILE=$tfrc "$bin" start --name pool-1 \
  --cache-dir "$data/cache-pool" --terraform-path "$tf" 2>"$data/pool.log" &
pool_pid=$!

echo "==> pushing examples/templates/prebuild-demo (preset \"ready\", prebuilds { instances = 1 })"
"$bin" templates push prebuild-demo --dir examples/templates/prebuild-demo --wait

# "full" once the preset's one prebuild is eligible (claimable) and no
# create is in flight; "failed: …" after a failed create.
pool_state() {
  "$bin" prebuilds status -o json | python3 -c '
import json, sys
s = json.load(sys.stdin)
p = [p for p in s["presets"] if p["template"] == "prebuild-demo"]
if p and p[0]["failures"] > 0:
    print("failed: " + p[0]["error"])
elif p and p[0]["eligible"] == 1 and p[0]["in_flight"] == 0:
    print("full")
else:
    print("filling")'
}
wait_pool_full() {
  local state
  for _ in $(seq 300); do
    state=$(pool_state)
    [ "$state" = full ] && return 0
    case "$state" in failed*) echo "demo: prebuild create $state (logs: $bin jobs list)" >&2; exit 1 ;; esac
    sleep 0.5
  done
  echo "demo: the prebuild pool did not fill within 150 s (see $data/pool.log)" >&2
  exit 1
}

echo "==> waiting for the reconciler to fill the pool (a 5 s build on pool-1)"
start=$(date +%s.%N)
wait_pool_full
echo "    pool full after $(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
"$bin" workspaces list --owner prebuilds
"$bin" prebuilds status

# Runs a `--wait` create and prints how long it took, in seconds.
timed_create() {
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" workspaces create "$@" --wait >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

echo "==> alice: workspaces create alice-dev --template prebuild-demo --owner alice --preset ready --wait"
claim_s=$(timed_create alice-dev --template prebuild-demo --owner alice --preset ready)
"$bin" workspaces show alice-dev | grep -Ei 'owner|claimed' || true

echo "==> waiting for the pool to refill (so bob's build runs alone)"
wait_pool_full

echo "==> bob: workspaces create bob-dev --template prebuild-demo --owner bob --preset none --wait"
fresh_s=$(timed_create bob-dev --template prebuild-demo --owner bob --preset none)

echo "==> jobs (prebuild creates ran on pool-1, alice's claim build and bob's build on general-1)"
"$bin" jobs list
echo
python3 - "$claim_s" "$fresh_s" <<'PY'
import sys
claim, fresh = float(sys.argv[1]), float(sys.argv[2])
print(f"claim (alice, prebuild handed over): {claim:6.2f} s")
print(f"fresh build (bob, same template):    {fresh:6.2f} s")
print(f"claim / fresh: {claim / fresh:.2f}")
PY
# No refill may be mid-build when the daemons drain.
"$bin" prebuilds pause >/dev/null 2>&1
