#!/usr/bin/env bash
# Benchmarks (not part of CI's pass/fail): builds in release and prints one
# table, then the same figures as JSON. Sizes are flags:
#
#   scripts/bench.sh [--rounds N] [--cancel-rounds N] [--claim-rounds N]
#                    [--load-daemons N] [--load-jobs N] [--load-rounds N]
#                    [--settle-limit D] [--round-limit D]
#                    [--sim-daemons N] [--sim-jobs N]
#                    [--proc-daemons N] [--proc-jobs N] [--limit D]
#                    [--log-lines N] [--skip-claim] [--skip-load] [--json-only]
#                    [--postgres [--replicas N]]
#
# Cases: job start with one idle daemon (create call, create → terraform
# started, with scripts/noop-terraform so only provisionerd's own cost
# shows) and idle RSS (examples/bench_dispatch); dispatch under load:
# --load-daemons simulated daemons (default 1000) that match none of
# --load-jobs pending jobs (default 10000), then a real daemon's jobs, how
# long the daemons take to settle, the coordinator's CPU and memory after
# (examples/bench_load; waits capped by --settle-limit and --round-limit,
# a build that cannot keep up shows "> limit"); coordinator throughput
# with --sim-daemons simulated daemons (default 50) running --sim-jobs
# queued jobs (default 2000) at once (examples/bench_sim_throughput);
# throughput with --proc-daemons `provisionerd start` processes (default
# 20) and --proc-jobs jobs (default 500) (examples/bench_proc_throughput;
# both capped by --limit); cancel latency (examples/bench_cancel, real
# terraform); and `workspaces create --wait` claiming a prebuild against a
# fresh build of a template with a 10 s VM (examples/bench_claim, real
# terraform and the stand-in coder provider; about 30 s a round, so
# --skip-claim leaves it out); and log throughput (examples/bench_logs:
# one job of --log-lines lines, default 1000000, then 10 jobs of a tenth
# each at once; lines/s, peak RSS).
#
# --postgres: the same cases on a throwaway PostgreSQL (scripts/postgres.sh,
# stopped at exit) with --replicas (default 3) replicas of `serve
# --database-url`, a fresh schema per benchmark (examples/support/engine.rs):
# idle dispatch creates on one replica for a daemon on another, the
# simulated and process daemons and the creates go round-robin over the
# replicas (each replica's CPU and the server's are shown), the load
# bench's daemons too, and log throughput goes through one replica. The
# cancel and claim cases run in-process on SQLite only, so they are left out.
#
# PROVISIONERD_BENCH_BIN=/path/to/provisionerd runs the same cases against
# another build of the binary (e.g. an older release, for before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=50 cancel_rounds=10 claim_rounds=3 skip_claim="" skip_load="" json_only=""
load_daemons=1000 load_jobs=10000 load_rounds=30 settle_limit=60s round_limit=20s
sim_daemons=50 sim_jobs=2000 proc_daemons=20 proc_jobs=500 limit=120s log_lines=1000000
postgres="" replicas=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --cancel-rounds) cancel_rounds=$2; shift 2 ;;
    --claim-rounds) claim_rounds=$2; shift 2 ;;
    --load-daemons) load_daemons=$2; shift 2 ;;
    --load-jobs) load_jobs=$2; shift 2 ;;
    --load-rounds) load_rounds=$2; shift 2 ;;
    --settle-limit) settle_limit=$2; shift 2 ;;
    --round-limit) round_limit=$2; shift 2 ;;
    --sim-daemons) sim_daemons=$2; shift 2 ;;
    --sim-jobs) sim_jobs=$2; shift 2 ;;
    --proc-daemons) proc_daemons=$2; shift 2 ;;
    --proc-jobs) proc_jobs=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --log-lines) log_lines=$2; shift 2 ;;
    --skip-claim) skip_claim=1; shift ;;
    --skip-load) skip_load=1; shift ;;
    --json-only) json_only=1; shift ;;
    --postgres) postgres=1; shift ;;
    --replicas) replicas=$2; shift 2 ;;
    *) echo "bench.sh: unknown argument $1 (see the header of $0)" >&2; exit 64 ;;
  esac
done

export PROVISIONERD_TEST_TERRAFORM=$(scripts/install-terraform.sh | tail -n 1)
if [ -z "$skip_claim" ]; then
  export PROVISIONERD_TEST_TF_CLI_CONFIG=$(scripts/install-coder-provider.sh 2>/dev/null | tail -n 1)
fi
cargo build --release --locked --quiet --bin provisionerd --example bench_dispatch --example bench_cancel \
  --example bench_claim --example bench_load --example bench_sim_throughput --example bench_proc_throughput --example bench_logs --example noop_terraform

out=$(mktemp -d)
pg=""
cleanup() {
  if [ -n "$pg" ]; then scripts/postgres.sh stop "$pg" >/dev/null 2>&1 || true; rm -rf "$pg"; fi
  rm -rf "$out"
}
trap cleanup EXIT
engine=SQLite
if [ -n "$postgres" ]; then
  skip_claim=1
  pg=$(mktemp -d)
  export PROVISIONERD_BENCH_DATABASE_URL=$(scripts/postgres.sh start "$pg" | tail -n 1)
  export PROVISIONERD_BENCH_REPLICAS=$replicas PROVISIONERD_BENCH_PG_DIR=$pg
  engine="PostgreSQL ×$replicas"
fi
target/release/examples/bench_dispatch "$rounds" >"$out/dispatch"
if [ -z "$postgres" ]; then
  target/release/examples/bench_cancel "$cancel_rounds" >"$out/cancel"
else
  : >"$out/cancel"
fi
if [ -z "$skip_load" ]; then
  target/release/examples/bench_load --daemons "$load_daemons" --jobs "$load_jobs" \
    --rounds "$load_rounds" --settle-limit "$settle_limit" --round-limit "$round_limit" >"$out/load"
else
  : >"$out/load"
fi
target/release/examples/bench_sim_throughput --daemons "$sim_daemons" --jobs "$sim_jobs" --limit "$limit" >"$out/sim"
target/release/examples/bench_proc_throughput --daemons "$proc_daemons" --jobs "$proc_jobs" --limit "$limit" >"$out/proc"
target/release/examples/bench_logs "$log_lines" 10 >"$out/logs"
if [ -z "$skip_claim" ]; then
  target/release/examples/bench_claim "$claim_rounds" >"$out/claim"
else
  : >"$out/claim"
fi

json=$(python3 - "$out" "$engine" <<'PY'
import json, re, sys
d = sys.argv[1]
res = {"engine": sys.argv[2]}
# Each example prints one `JSON {...}` line; its keys join the result.
for name in ("dispatch", "load", "sim", "proc", "logs"):
    for line in open(f"{d}/{name}"):
        if line.startswith("JSON "):
            res.update(json.loads(line[5:]))
cancel = {}
for line in open(f"{d}/cancel"):
    m = re.match(r"\s+cancel → (terraform interrupted|job canceled)\s+p50\s+(\d+)\s+p95\s+(\d+)\s+max\s+(\d+)", line)
    if m:
        key = "interrupt" if m.group(1).startswith("terraform") else "canceled"
        cancel[key] = {"p50": int(m.group(2)), "p95": int(m.group(3)), "max": int(m.group(4))}
if cancel:
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
cross = ", A → B" if r["engine"] != "SQLite" else ""
rows = [
    ("create call (ms)", r["create_call_ms"]["p50"], r["create_call_ms"]["p99"]),
    (f"idle dispatch: create → terraform{cross} (ms)", r["dispatch_idle_ms"]["p50"], r["dispatch_idle_ms"]["p99"]),
]
if "cancel_ms" in r:
    rows += [
        ("cancel → terraform interrupted (ms)", r["cancel_ms"]["interrupt"]["p50"], r["cancel_ms"]["interrupt"]["p95"]),
        ("cancel → job canceled (ms)", r["cancel_ms"]["canceled"]["p50"], r["cancel_ms"]["canceled"]["p95"]),
    ]
def cell(v):
    return v if isinstance(v, str) else ("-" if v is None else f"{v:.2f}")
def row(name, a, b=""):
    print(f"{name:54} {cell(a):>9} {cell(b):>9}")
print(f"engine: {r['engine']}")
print(f"{'case':54} {'p50':>9} {'p99/p95':>9}")
for name, a, b in rows:
    row(name, a, b)
rss = r["idle_rss_kib"]
row("idle RSS coordinator / daemon (MiB)", rss["coordinator"] / 1024, rss["daemon"] / 1024)
l = r.get("load")
if l:
    n, m = l["daemons"], l["jobs"]
    d = l["dispatch_ms"]
    over = f"> {d['limit_ms']}"
    if d["timed_out"] and d["rounds"] == 0:
        row(f"{n} daemons, {m} jobs: create → terraform (ms)", over, over)
    else:
        row(f"{n} daemons, {m} jobs: create → terraform (ms)", d["p50"], d["p99"])
    row("  first matching job (ms)", d["first"] if d["first"] is not None else over)
    if d["timed_out"] and d["rounds"] > 0:
        row(f"  round {d['rounds'] + 1} gave up (ms)", over)
    settle = l["settle_s"] if l["settle_s"] is not None else f"> {l['settle_limit_s']:.0f}"
    row(f"{n} daemons connecting at once: settled (s)", settle)
    row(f"  coordinator CPU over {l['cpu_window_s']:.0f} s after (% of a core)", l["cpu_pct"])
    quiet = l["quiet_s"] if l["quiet_s"] is not None else f"> {l['settle_limit_s']:.0f}"
    row("  coordinator quiet (< 5% for 1 s) after (s)", quiet)
    row("  coordinator RSS / peak (MiB)", l["rss_kib"] / 1024, l["hwm_kib"] / 1024)
for key, what in (("sim_throughput", "simulated daemons"), ("proc_throughput", "daemon processes")):
    t = r.get(key)
    if t:
        capped = f"  (limit: {t['done']}/{t['jobs']})" if t["timed_out"] else ""
        row(f"throughput, {t['daemons']} {what}, {t['jobs']} jobs (jobs/s)", t["jobs_per_s"])
        if capped:
            print(capped)
        if "replica_cpu_pct" in t:
            cpus = " / ".join(f"{p:.0f}" for p in t["replica_cpu_pct"])
            pg = t.get("pg_cpu_pct")
            pg = f", PostgreSQL {pg:.0f}" if pg is not None else ""
            print(f"  CPU % of a core: coordinator {cpus}{pg}")
for key, what in (("one", "log lines/s, 1 job"), ("many", "log lines/s, 10 jobs at once")):
    c = r["logs"][key]
    peak = c["peak_rss_kib"]
    row(what, f"{c['lines_per_sec']:.0f}")
    print(f"  peak RSS MiB: coordinator {peak['coordinator']/1024:.1f}, daemon {peak['daemon']/1024:.1f}")
c = r.get("claim")
if c:
    row("create --wait claiming a prebuild (s, p50/max)", c["claim_create_s"]["p50"], c["claim_create_s"]["max"])
    row("create --wait fresh build, 10 s VM (s, p50/max)", c["fresh_create_s"]["p50"], c["fresh_create_s"]["max"])
    row("claim / fresh build (p50s)", f"{c['claim_over_fresh']:.3f}")
PY
fi
echo "$json"
