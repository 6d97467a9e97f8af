#!/usr/bin/env bash
# Tests the container image the way the provisionerd chart runs it: builds
# it (scripts/build-image.sh, under a throwaway tag), checks its version,
# user and labels against Cargo.toml and the charts, then runs the daemon in
# it under podman as the chart runs it in a pod — read-only root filesystem
# with no writable tmpfs but /tmp, the chart's uid/gid, all capabilities
# dropped, no new privileges, the cache dir as an emptyDir gives it (owned
# by root, group the fsGroup, mode 2777), the key as a Secret volume gives
# it (root:fsGroup, 0440), the daemon's environment as `helm template`
# renders it, and a PID namespace shared with a sleeper container standing
# in for the pod's pause container (shareProcessNamespace: the daemon is
# not PID 1) — against a coordinator on this host:
#   0. the chart's probes, /readyz and /healthz, answer 200;
#   1. a template import and a workspace build (terraform init, plan,
#      apply with a local-exec provisioner) succeed in the container;
#   1b. a template using coder/coder from the project's provider mirror,
#      mounted read-only with a CLI config in TF_CLI_CONFIG_FILE (the
#      chart's extraVolumes/extraEnv way): terraform installs the provider
#      into the cache's plugin dir and runs it as the chart's user;
#   2. a canceled build: terraform gets SIGINT and halts gracefully;
#   3. `podman stop -t 30` (SIGTERM, SIGKILL after 30 s, as the kubelet
#      stops a pod) while terraform runs a build drains: the stop waits for
#      the running build, which succeeds, and the container exits 0 well
#      before the 30 s.
# The containers use the host's network (--network host) to reach the
# coordinator on 127.0.0.1.
#
#   scripts/test-image.sh [build-image.sh options, e.g. --binary PATH]
#   scripts/test-image.sh --image REF   test an image built already (e.g.
#                                       from the Containerfile); kept
#
# Installs podman (and what the build needs) with apt when missing; runs as
# root. Removes the containers, directories and image it made. Needs helm
# (scripts/install-k8s-tools.sh, which installs it when missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$SECONDS

fail() { echo "test-image: FAIL: $*" >&2; exit 1; }
step() { echo "== $* ($((SECONDS - started)) s)"; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >&2
fi

tmp=$(mktemp -d)
id=provisionerd-image-test-$$
image=localhost/$id:test
built=yes
if [ "${1:-}" = --image ]; then
  image=${2:?--image needs an image reference}
  built=no
fi
container=$id
pause=$id-pause
coord_pid=""
cleanup() {
  status=$?
  if [ $status -ne 0 ] && [ -n "$(podman ps -a -q --filter "name=^$container\$" 2>/dev/null)" ]; then
    echo "--- container log (last 40 lines)" >&2
    podman logs "$container" 2>&1 | tail -n 40 >&2 || true
  fi
  if [ $status -ne 0 ] && [ -s "$tmp/coord.log" ]; then
    echo "--- coordinator log (last 20 lines)" >&2
    tail -n 20 "$tmp/coord.log" >&2
  fi
  # One at a time, the daemon before the sleeper whose PID namespace it
  # shares: in one call podman may take the sleeper first, refuse it (a
  # container depends on it) and leave it running.
  for c in "$container" "$pause" "$id-copy"; do
    podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  if [ -n "$(podman ps -a -q --filter "name=^$pause\$" 2>/dev/null)" ]; then
    echo "test-image: could not remove container $pause" >&2
  fi
  if [ "$built" = yes ]; then podman rmi -f "$image" >/dev/null 2>&1 || true; fi
  if [ -n "$coord_pid" ]; then kill "$coord_pid" 2>/dev/null || true; wait "$coord_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
  exit $status
}
trap cleanup EXIT

# What this machine's podman needs (no systemd, no crun): see
# docs/operations.md. Not the user's own config: this test's only.
cat > "$tmp/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
export CONTAINERS_CONF=$tmp/containers.conf

if [ "$built" = yes ]; then
  step "build the image"
  scripts/build-image.sh --tag "$image" "$@" >/dev/null
else
  podman image exists "$image" || fail "--image $image: no such image in podman's store"
fi

# What the chart sets, read from it so the test follows the chart.
values=charts/provisionerd/values.yaml
uid=$(sed -n 's/^  runAsUser: *//p' "$values")
gid=$(sed -n 's/^  runAsGroup: *//p' "$values")
tf_path=$(sed -n 's/^  terraformPath: *//p' "$values")
cache=$(grep -A1 'name: PROVISIONERD_CACHE_DIR$' charts/provisionerd/templates/workload.yaml |
  sed -n 's/^ *value: *//p')
if [ -z "$uid" ] || [ -z "$gid" ] || [ -z "$tf_path" ] || [ -z "$cache" ]; then
  fail "read the chart's uid ($uid), gid ($gid), terraformPath ($tf_path), cache dir ($cache)"
fi

step "image metadata"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
got=$(podman run --rm --user "$uid:$gid" "$image" --version)
[ "$got" = "provisionerd $version" ] || fail "--version in the image says \"$got\", Cargo.toml is $version"
for chart in charts/*/Chart.yaml; do
  app=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart")
  [ "$app" = "$version" ] || fail "$chart appVersion is \"$app\", the image's is $version"
done
inspect() { podman image inspect --format "$1" "$image"; }
[ "$(inspect '{{.Config.User}}')" = "$uid:$gid" ] || fail "image user is $(inspect '{{.Config.User}}'), the chart runs $uid:$gid"
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["/usr/local/bin/provisionerd"]' ] ||
  fail "image entrypoint is $(inspect '{{json .Config.Entrypoint}}')"
for label in title description version revision created source licenses; do
  [ -n "$(inspect "{{index .Config.Labels \"org.opencontainers.image.$label\"}}")" ] ||
    fail "image has no org.opencontainers.image.$label label"
done
[ "$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')" = "$version" ] ||
  fail "image version label is not $version"
# The Containerfile must make the same image: the same user, entrypoint,
# paths.
for want in "USER $uid:$gid" 'ENTRYPOINT \["/usr/local/bin/provisionerd"\]' "$tf_path" "$cache"; do
  grep -q "$want" Containerfile || fail "Containerfile has no \"$want\" (the offline image has it)"
done

step "start a coordinator on the host"
# The image's own binary runs the coordinator and the CLI here.
host_bin=$tmp/provisionerd
podman create --name "$id-copy" "$image" >/dev/null
podman cp "$id-copy:/usr/local/bin/provisionerd" "$host_bin"
podman rm "$id-copy" >/dev/null
"$host_bin" serve --listen 127.0.0.1:0 --data-dir "$tmp/coord" 2>"$tmp/coord.log" &
coord_pid=$!
for _ in $(seq 300); do
  [ -s "$tmp/coord/address" ] && [ -s "$tmp/coord/admin-token" ] && break
  kill -0 "$coord_pid" 2>/dev/null || fail "the coordinator exited before it wrote its address (its log is below)"
  sleep 0.1
done
[ -s "$tmp/coord/address" ] || fail "coordinator did not write its address within 30 s"
export PROVISIONERD_URL PROVISIONERD_TOKEN_FILE=$tmp/coord/admin-token
PROVISIONERD_URL=$(cat "$tmp/coord/address")
cli() { timeout 60 "$host_bin" "$@"; }
cli keys create image-test 2>"$tmp/keys.err" | tail -n1 > "$tmp/pdk" || true
grep -q '^pdk_' "$tmp/pdk" ||
  fail "create a provisioner key: got \"$(cat "$tmp/pdk")\", stderr: $(cat "$tmp/keys.err")"

step "render the daemon's environment from the chart"
# The stand-in coder provider's mirror (CI has made it already).
mirror=$root/.tools/provider-mirror
[ -d "$mirror/registry.terraform.io/coder/coder" ] || scripts/install-coder-provider.sh >/dev/null
mkdir -p "$tmp/tfrc"
cat > "$tmp/tfrc/provider.tfrc" <<'EOF'
provider_installation {
  filesystem_mirror {
    path    = "/opt/provider-mirror"
    include = ["registry.terraform.io/coder/coder"]
  }
  direct {
    exclude = ["registry.terraform.io/coder/coder"]
  }
}
EOF
# As an operator adds a provider mirror: extraVolumes (hostPath here; a
# ConfigMap or an image volume in a cluster), extraVolumeMounts, extraEnv.
cat > "$tmp/values.yaml" <<EOF
extraEnv:
  - name: TF_CLI_CONFIG_FILE
    value: /etc/provisionerd/terraform/provider.tfrc
extraVolumes:
  - name: provider-mirror
    hostPath: {path: "$mirror", type: Directory}
  - name: terraform-config
    hostPath: {path: "$tmp/tfrc", type: Directory}
extraVolumeMounts:
  - {name: provider-mirror, mountPath: /opt/provider-mirror, readOnly: true}
  - {name: terraform-config, mountPath: /etc/provisionerd/terraform, readOnly: true}
EOF
helm=$(scripts/install-k8s-tools.sh 2>"$tmp/k8s-tools.log" | tail -n1)/helm ||
  fail "install helm: $(cat "$tmp/k8s-tools.log")"
# Helm keeps no state outside this run.
export HELM_CACHE_HOME=$tmp/helm/cache HELM_CONFIG_HOME=$tmp/helm/config HELM_DATA_HOME=$tmp/helm/data
# The metrics listen on the host's network: the chart's address with a free
# port, in case 9464 is taken here.
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])')
# shutdown.terminationGracePeriodSeconds=30 is the stop's -t below; with
# stopMarginSeconds=5 and cancelGraceSeconds=2 the drain timeout is
# 30 - 5 = 25s, so the daemon waits 25 - 2 - 10 = 13 s for the job before
# it interrupts it (the rest is the cancel grace and the report). The
# coordinator's URL is the test's; the key Secret's name does not matter.
"$helm" template image-test charts/provisionerd --show-only templates/workload.yaml \
  --set coordinator.url="$PROVISIONERD_URL",key.existingSecret=image-test-key \
  --set shutdown.terminationGracePeriodSeconds=30,shutdown.stopMarginSeconds=5,daemon.cancelGraceSeconds=2 \
  --set metrics.port="$metrics_port" -f "$tmp/values.yaml" > "$tmp/workload.yaml" 2>"$tmp/helm.err" ||
  fail "helm template charts/provisionerd: $(cat "$tmp/helm.err")"
# Every entry of the daemon container's env as rendered (PROVISIONERD_*,
# HOME, TMPDIR, extraEnv); the one not given as a value, PROVISIONERD_NAME
# (the pod's name, from metadata.name), becomes the container's name. And
# the extraVolumes' hostPaths with their mounts, as podman -v arguments.
python3 - "$tmp/workload.yaml" "$container" "$tmp/mounts" > "$tmp/env" <<'PY' || fail "read the chart's env and volumes"
import sys, yaml
pod = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]
if pod.get("shareProcessNamespace") is not True:
    sys.exit("the chart no longer shares the pod's PID namespace: change this test's --pid")
daemon = next(c for c in pod["containers"] if c["name"] == "provisionerd")
for e in daemon["env"]:
    name = e["name"]
    if "value" in e:
        print(f"{name}={e['value']}")
    elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
        print(f"{name}={sys.argv[2]}")
    else:
        sys.exit(f"env {name}: neither a value nor the pod's name")
host = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
with open(sys.argv[3], "w") as out:
    for m in daemon["volumeMounts"]:
        if m["name"] in host:
            ro = ":ro" if m.get("readOnly") else ""
            print(f"{host[m['name']]}:{m['mountPath']}{ro}", file=out)
PY
env_args=()
while IFS= read -r line; do env_args+=(-e "$line"); done < "$tmp/env"
while IFS= read -r line; do env_args+=(-v "$line"); done < "$tmp/mounts"
sed 's/^/   /' "$tmp/env"
rendered() { sed -n "s/^$1=//p" "$tmp/env"; }
[ "$(rendered PROVISIONERD_CACHE_DIR)" = "$cache" ] || fail "the rendered cache dir is not $cache"
[ "$(rendered PROVISIONERD_DRAIN_TIMEOUT)" = 25s ] ||
  fail "the rendered drain timeout is \"$(rendered PROVISIONERD_DRAIN_TIMEOUT)\", this test expects 25s"
key_file=$(rendered PROVISIONERD_KEY_FILE)
[ -n "$key_file" ] || fail "the chart renders no PROVISIONERD_KEY_FILE"
# Where the chart mounts the key Secret, as that volume with the pod's
# fsGroup gives it (defaultMode 0400 plus group read): root's, readable by
# the fsGroup.
mkdir -p "$tmp/key"
mv "$tmp/pdk" "$tmp/key/$(basename "$key_file")"
chown 0:"$gid" "$tmp/key/$(basename "$key_file")"
chmod 0440 "$tmp/key/$(basename "$key_file")"

step "run the daemon in the image as the chart does"
# The chart's securityContext: runAsUser/runAsGroup, readOnlyRootFilesystem
# (and, unlike podman's default, no writable tmpfs on /run or /var/tmp: a
# pod has none), capabilities drop ALL, allowPrivilegeEscalation false
# (no-new-privileges); seccomp RuntimeDefault is podman's default profile.
secure=(--network host --read-only --read-only-tmpfs=false --user "$uid:$gid"
  --cap-drop ALL --security-opt no-new-privileges)
# The pod's pause container: the PID namespace's PID 1 (the chart sets
# shareProcessNamespace), so the daemon is not.
podman run -d --name "$pause" "${secure[@]}" --entrypoint /bin/sleep "$image" infinity >/dev/null
# The cache as kubelet makes an emptyDir for a pod with an fsGroup: root's,
# group the fsGroup, mode 2777 — not the daemon's own, so it cannot chmod it.
mkdir "$tmp/cache"
chown 0:"$gid" "$tmp/cache"
chmod 2777 "$tmp/cache"
podman run -d --name "$container" "${secure[@]}" --pid "container:$pause" \
  -v "$tmp/cache:$cache" --tmpfs /tmp -v "$tmp/key:$(dirname "$key_file"):ro" \
  "${env_args[@]}" "$image" start >/dev/null

step "the chart's probes: /readyz and /healthz"
probe() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$metrics_port$1" || true; }
deadline=$((SECONDS + 120))
until [ "$(probe /readyz)" = 200 ]; do
  [ "$(podman inspect --format '{{.State.Running}}' "$container")" = true ] ||
    fail "the daemon's container exited before it was ready"
  [ $SECONDS -lt $deadline ] ||
    fail "/readyz still not 200 after 120 s: $(curl -s --max-time 5 "http://127.0.0.1:$metrics_port/readyz")"
  sleep 0.5
done
[ "$(probe /healthz)" = 200 ] || fail "/healthz answers $(probe /healthz), not 200"

# A template whose build runs a local-exec provisioner for as long as a
# variable says: long enough to stop the container in the middle of it.
mkdir -p "$tmp/template"
cat > "$tmp/template/main.tf" <<'EOF'
variable "sleep_seconds" {
  type    = number
  default = 0
}

resource "terraform_data" "work" {
  input = var.sleep_seconds
  provisioner "local-exec" {
    command = "echo image-test: sleeping ${var.sleep_seconds}s; sleep ${var.sleep_seconds}; echo image-test: done"
  }
}
EOF

# Whole outputs, not piped into `grep -q`: with pipefail, grep leaving
# early would fail the writer with a broken pipe.
job_logs() { local out; out=$(cli jobs logs "$1" 2>&1) || true; printf '%s\n' "$out"; }
job_status() { cli jobs show "$1" -o json | sed -n 's/^  "status": "\(.*\)",\{0,1\}$/\1/p'; }
wait_job() { # id seconds: until the job has ended; prints its status
  local deadline=$((SECONDS + $2)) status=""
  while [ $SECONDS -lt $deadline ]; do
    status=$(job_status "$1")
    case $status in succeeded|failed|canceled) echo "$status"; return ;; esac
    sleep 0.5
  done
  fail "job $1 still \"$status\" after $2 s"
}
expect_succeeded() { # id what
  local status
  status=$(wait_job "$1" 180)
  if [ "$status" != succeeded ]; then
    job_logs "$1" | tail -n 30 >&2
    fail "$2 (job $1) ended $status"
  fi
}

step "job 1: template import (init, validate, plan)"
job=$(cli templates push image-test --dir "$tmp/template" | tail -n1)
expect_succeeded "$job" "template import"

step "job 2: workspace build (plan, apply)"
job=$(cli workspaces create one --template image-test --var sleep_seconds=0 | tail -n1)
expect_succeeded "$job" "workspace build"
grep -q 'image-test: done' <<<"$(job_logs "$job")" || fail "job $job's logs have no local-exec output"

step "job 2b: a template using coder/coder, installed from the mounted mirror"
mkdir -p "$tmp/coder-template"
cat > "$tmp/coder-template/main.tf" <<'EOF'
terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

data "coder_workspace" "me" {}

resource "terraform_data" "named" {
  input = data.coder_workspace.me.name
}
EOF
job=$(cli templates push image-test-coder --dir "$tmp/coder-template" | tail -n1)
expect_succeeded "$job" "template import with coder/coder"
job=$(cli workspaces create with-coder --template image-test-coder | tail -n1)
expect_succeeded "$job" "workspace build with coder/coder"
# From an unpacked mirror terraform installs a link to the mirror's
# package into the plugin cache (made by the daemon's user).
plugin=$(find "$tmp/cache/plugins/registry.terraform.io/coder/coder" -mindepth 2 -maxdepth 2 -name linux_amd64 | head -n1)
[ -n "$plugin" ] || fail "coder/coder is not in the cache's plugin dir after job $job"
[ "$(stat -c %u "$plugin")" = "$uid" ] ||
  fail "the cached provider $plugin is uid $(stat -c %u "$plugin")'s, not the daemon's ($uid)"
case $(readlink "$plugin") in
  /opt/provider-mirror/*) ;;
  *) fail "the cached provider $plugin is not the mounted mirror's: $(readlink "$plugin")" ;;
esac

step "job 3: a cancel interrupts terraform (SIGINT), which halts by itself"
job=$(cli workspaces create three --template image-test --var sleep_seconds=60 | tail -n1)
deadline=$((SECONDS + 180))
until grep -q 'image-test: sleeping 60s' <<<"$(job_logs "$job")"; do
  [ $SECONDS -lt $deadline ] || fail "job $job's provisioner did not start within 180 s (status $(job_status "$job"))"
  sleep 0.2
done
cli jobs cancel -y "$job" >/dev/null
status=$(wait_job "$job" 60)
[ "$status" = canceled ] || fail "the canceled build (job $job) ended $status"
# terraform's own handler ran (the launcher leaves SIGINT to it) and it
# stopped within the 2 s cancel grace, before any SIGKILL.
logs=$(job_logs "$job")
for want in 'Interrupt received' 'execution halted'; do
  grep -q "$want" <<<"$logs" || {
    tail -n 20 <<<"$logs" >&2
    fail "the canceled build's log (job $job) has no \"$want\" from terraform"
  }
done

step "job 4: podman stop -t 30 while terraform runs"
# 8 s: the stop lands mid-sleep with seconds to spare on a loaded machine,
# and well within the 13 s the drain waits for a job.
job=$(cli workspaces create two --template image-test --var sleep_seconds=8 | tail -n1)
deadline=$((SECONDS + 180))
until grep -q 'image-test: sleeping 8s' <<<"$(job_logs "$job")"; do
  [ $SECONDS -lt $deadline ] || {
    job_logs "$job" | tail -n 20 >&2
    fail "job $job's provisioner did not start within 180 s (status $(job_status "$job"))"
  }
  sleep 0.2
done
# The coordinator's word, just before the stop: the stop is a drain of a
# running job, not of an idle daemon.
status=$(job_status "$job")
[ "$status" = running ] || fail "job $job is $status right before the stop, not running"
stop_started=$(date +%s%N)
podman stop -t 30 "$container" >/dev/null
stop_ms=$((($(date +%s%N) - stop_started) / 1000000))
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
echo "   stopped after $stop_ms ms, exit code $exit_code"
podman logs "$container" > "$tmp/container.log" 2>&1
grep -q 'drain requested' "$tmp/container.log" || fail "the daemon did not log the drain SIGTERM asks for"
if grep -q 'running as PID 1' "$tmp/container.log"; then
  fail "the daemon was its PID namespace's PID 1; in the chart's pod the pause container is"
fi
[ "$exit_code" = 0 ] || fail "the container exited $exit_code after the stop; a drained daemon exits 0"
[ "$stop_ms" -lt 30000 ] ||
  fail "the container took $stop_ms ms to stop: SIGKILL came after the 30 s grace"
# The build had seconds of its sleep left: a stop that did not wait for
# them did not drain.
[ "$stop_ms" -ge 2000 ] || fail "the container stopped after $stop_ms ms, before the running build could end"
# A drain reports the job before the daemon exits: it has ended by now.
status=$(job_status "$job")
[ "$status" = succeeded ] || fail "the build the stop interrupted (job $job) is $status; a drain finishes it"
grep -q 'image-test: done' <<<"$(job_logs "$job")" || fail "job $job's provisioner did not run to its end"

echo "test-image: ok ($((SECONDS - started)) s)"
