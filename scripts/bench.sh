#!/usr/bin/env bash
# Benchmarks (not part of CI's pass/fail): builds in release and prints one
# table, then the same figures as JSON. Sizes are flags:
#
#   scripts/bench.sh [--rounds N] [--cancel-rounds N] [--claim-rounds N]
#                    [--log-lines N] [--skip-claim] [--json-only]
#
# Cases so far: job start with one idle daemon (create call, create →
# terraform started, with scripts/noop-terraform so only provisionerd's own
# cost shows), idle RSS of coordinator and daemon, and cancel latency
# (examples/bench_cancel, real terraform), and `workspaces create --wait`
# claiming a prebuild against a fresh build of a template with a 10 s VM
# (examples/bench_claim, real terraform and the stand-in coder provider;
# about 30 s a round, so --skip-claim leaves it out), and log throughput
# (examples/bench_logs: one job of --log-lines lines, default 1000000, then
# 10 jobs of a tenth each at once; lines/s, peak RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=50 cancel_rounds=10 claim_rounds=3 log_lines=1000000 skip_claim="" json_only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --cancel-rounds) cancel_rounds=$2; shift 2 ;;
    --claim-rounds) claim_rounds=$2; shift 2 ;;
    --log-lines) log_lines=$2; shift 2 ;;
    --skip-claim) skip_claim=1; shift ;;
    --json-only) json_only=1; shift ;;
    *) echo "bench.sh: unknown argument $1 (see the header of $0)" >&2; exit 64 ;;
  esac
done

export PROVISIONERD_TEST_TERRAFORM=$(scripts/install-terraform.sh | tail -n 1)
if [ -z "$skip_claim" ]; then
  export PROVISIONERD_TEST_TF_CLI_CONFIG=$(scripts/install-coder-provider.sh 2>/dev/null | tail -n 1)
fi
cargo build --release --locked --quiet --bin provisionerd --example bench_dispatch --example bench_cancel --example bench_claim --example bench_logs

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
target/release/examples/bench_dispatch "$rounds" >"$out/dispatch"
target/release/examples/bench_cancel "$cancel_rounds" >"$out/cancel"
target/release/examples/bench_logs "$log_lines" 10 >"$out/logs"
if [ -z "$skip_claim" ]; then
  target/release/examples/bench_claim "$claim_rounds" >"$out/claim"
else
  : >"$out/claim"
fi

json=$(python3 - "$out" <<'PY'
import json, re, sys
d = sys.argv[1]
res = {}
for name in ("dispatch", "logs"):
    for line in open(f"{d}/{name}"):
        if line.startswith("JSON "):
            res.update(json.loads(line[5:]))
cancel = {}
for line in open(f"{d}/cancel"):
    m = re.match(r"\s+cancel → (terraform interrupted|job canceled)\s+p50\s+(\d+)\s+p95\s+(\d+)\s+max\s+(\d+)", line)
    if m:
        key = "interrupt" if m.group(1).startswith("terraform") else "canceled"
        cancel[key] = {"p50": int(m.group(2)), "p95": int(m.group(3)), "max": int(m.group(4))}
res["cancel_ms"] = cancel
for line in open(f"{d}/claim"):
    if line.startswith("JSON "):
        res["claim"] = json.loads(line[5:])
print(json.dumps(res))
PY
)
if [ -z "$json_only" ]; then
  python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
rows = [
    ("create call (ms)", r["create_call_ms"]["p50"], r["create_call_ms"]["p99"]),
    ("idle dispatch: create → terraform (ms)", r["dispatch_idle_ms"]["p50"], r["dispatch_idle_ms"]["p99"]),
    ("cancel → terraform interrupted (ms)", r["cancel_ms"]["interrupt"]["p50"], r["cancel_ms"]["interrupt"]["p95"]),
    ("cancel → job canceled (ms)", r["cancel_ms"]["canceled"]["p50"], r["cancel_ms"]["canceled"]["p95"]),
]
print(f"{'case':42} {'p50':>9} {'p99/p95':>9}")
for name, a, b in rows:
    print(f"{name:42} {a:>9.2f} {b:>9.2f}")
rss = r["idle_rss_kib"]
print(f"{'idle RSS coordinator / daemon (MiB)':42} {rss['coordinator']/1024:>9.1f} {rss['daemon']/1024:>9.1f}")
for key, what in (("one", "log lines/s, 1 job"), ("many", "log lines/s, 10 jobs at once")):
    c = r["logs"][key]
    peak = c["peak_rss_kib"]
    print(f"{what:42} {c['lines_per_sec']:>9.0f}  (peak RSS MiB: coordinator {peak['coordinator']/1024:.1f}, daemon {peak['daemon']/1024:.1f})")
c = r.get("claim")
if c:
    print(f"{'create --wait claiming a prebuild (s)':42} {c['claim_create_s']['p50']:>9.2f} {c['claim_create_s']['max']:>9.2f}  (max)")
    print(f"{'create --wait fresh build, 10 s VM (s)':42} {c['fresh_create_s']['p50']:>9.2f} {c['fresh_create_s']['max']:>9.2f}  (max)")
    print(f"{'claim / fresh build (p50s)':42} {c['claim_over_fresh']:>9.3f}")
PY
fi
echo "$json"
