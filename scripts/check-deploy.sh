#!/usr/bin/env bash
# Checks what users deploy with: lints both Helm charts (`helm lint
# --strict`) with their defaults and with every example values file,
# validates what they render against the Kubernetes API schemas
# (`kubernetes-validate --strict`), checks that bad values are refused with
# a clear message, and verifies the systemd units (`systemd-analyze
# verify`, which must print nothing), and that the charts' default image
# is the one scripts/build-image.sh tags (appVersion = Cargo.toml's
# version). Installs its tools first.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=$(scripts/install-k8s-tools.sh | tail -n1)
helm=$bin/helm
validate=$bin/kubernetes-validate
k8s_version=1.30.0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Helm keeps no state outside this run.
export HELM_CACHE_HOME=$tmp/cache HELM_CONFIG_HOME=$tmp/config HELM_DATA_HOME=$tmp/data

check() { # chart release [helm args…]
  local chart=$1 release=$2
  shift 2
  echo "== $chart as $release $*"
  "$helm" lint --strict "charts/$chart" "$@"
  "$helm" template "$release" "charts/$chart" "$@" > "$tmp/out.yaml"
  # CRD kinds (ServiceMonitor, ScaledObject) have no bundled schema: they
  # are reported as warnings; everything else must pass strictly.
  "$validate" --strict --quiet -k "$k8s_version" "$tmp/out.yaml"
}

refused() { # what-to-expect chart [helm args…]
  local want=$1 chart=$2
  shift 2
  if "$helm" template t "charts/$chart" "$@" > "$tmp/bad.out" 2>&1; then
    echo "charts/$chart $*: rendered, but should have been refused ($want)" >&2
    exit 1
  fi
  grep -q -- "$want" "$tmp/bad.out" || {
    echo "charts/$chart $*: refused without saying \"$want\":" >&2
    cat "$tmp/bad.out" >&2
    exit 1
  }
  echo "== refused as expected: $want"
}

renders() { # what-to-find… : in what the last `check` rendered
  local want
  for want in "$@"; do
    grep -q -- "$want" "$tmp/out.yaml" || {
      echo "rendered without \"$want\"" >&2
      exit 1
    }
  done
}

renders_no() { # what-not-to-find… : in what the last `check` rendered
  local unwanted
  for unwanted in "$@"; do
    if grep -q -- "$unwanted" "$tmp/out.yaml"; then
      echo "rendered with \"$unwanted\", which it should not have" >&2
      exit 1
    fi
  done
}

# Every PROVISIONERD_* variable the charts, units and examples set must be
# one the binary reads (src/config.rs): a typo would be silently ignored.
known=$(grep -o 'env = "PROVISIONERD_[A-Z_]*"' src/config.rs | grep -o 'PROVISIONERD_[A-Z_]*' | sort -u)
for var in $(grep -rhoE 'PROVISIONERD_[A-Z_]+' charts examples/systemd examples/kubernetes | sort -u); do
  if ! grep -qx "$var" <<<"$known"; then
    echo "$var is set by a chart, unit or example but read by no flag in src/config.rs" >&2
    exit 1
  fi
done
echo "== every PROVISIONERD_* variable deployed is a flag"

# The image scripts/build-image.sh tags (and the Containerfile labels) is
# ghcr.io/provisionerd/provisionerd:<Cargo.toml version>; the charts pull
# image.repository at their appVersion, so those must name the same image.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
for chart in charts/*/; do
  app=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")
  if [ "$app" != "$version" ]; then
    echo "${chart}Chart.yaml: appVersion \"$app\" is not Cargo.toml's version $version (the image's tag)" >&2
    exit 1
  fi
  repo=$(sed -n '/^image:/,/^[^ ]/s/^  repository: *//p' "$chart/values.yaml")
  if [ "$repo" != ghcr.io/provisionerd/provisionerd ]; then
    echo "${chart}values.yaml: image.repository \"$repo\" is not the image scripts/build-image.sh tags" >&2
    exit 1
  fi
  if ! sed -n '/^image:/,/^[^ ]/p' "$chart/values.yaml" | grep -q '^  tag: ""'; then
    echo "${chart}values.yaml: image.tag must default to \"\" (the chart's appVersion)" >&2
    exit 1
  fi
done
if [ "$(grep -c "^ARG VERSION=$version\$" Containerfile)" != 2 ]; then
  echo "Containerfile: its two \"ARG VERSION=\" lines must say $version (Cargo.toml's version)" >&2
  exit 1
fi
echo "== the charts' default image is ghcr.io/provisionerd/provisionerd:$version"

check provisionerd-coordinator coordinator
renders 'kind: StatefulSet' 'volumeClaimTemplates:' 'replicas: 1$'
renders_no 'kind: PodDisruptionBudget' 'podAntiAffinity' 'PROVISIONERD_DATABASE_URL_FILE'
check provisionerd-coordinator coordinator -f examples/kubernetes/coordinator.yaml
# HA on PostgreSQL: a Deployment of 3 with scratch data dirs, the URL and
# the admin token as files from Secrets, a PDB, anti-affinity.
check provisionerd-coordinator coordinator -f examples/kubernetes/coordinator-ha.yaml
renders 'kind: Deployment' 'replicas: 3$' 'kind: PodDisruptionBudget' 'maxUnavailable: 1$' \
  'preferredDuringSchedulingIgnoredDuringExecution' 'topologyKey: kubernetes.io/hostname' \
  'PROVISIONERD_DATABASE_URL_FILE' 'secretName: provisionerd-database$' \
  'PROVISIONERD_ADMIN_TOKEN_FILE' 'secretName: provisionerd-admin-token$' 'path: /readyz'
renders_no 'volumeClaimTemplates:' 'PROVISIONERD_DATABASE_URL$' 'postgres://'
check provisionerd-coordinator coordinator -f examples/kubernetes/coordinator-ha.yaml \
  --set podAntiAffinity.mode=required --set podDisruptionBudget.enabled=false
renders 'requiredDuringSchedulingIgnoredDuringExecution'
renders_no 'kind: PodDisruptionBudget'
check provisionerd pool --set key.existingSecret=k
# By default terraform gets no Kubernetes credentials: the chart's own
# account, no token mounted on it or the pods, no Role.
renders '^kind: ServiceAccount$' '^automountServiceAccountToken: false$' \
  '^      serviceAccountName: pool-provisionerd$' '^      automountServiceAccountToken: false$'
renders_no 'automountServiceAccountToken: true' 'kind: Role' '^  annotations:$'
check provisionerd prebuilds -f examples/kubernetes/prebuild-pool.yaml
check provisionerd general -f examples/kubernetes/general-pool.yaml
# The Kubernetes pool: its named account with the token mounted (on the
# account and the pods), and a Role for pods and PVCs in the workspace
# namespace only, bound to that account in the pool's namespace.
check provisionerd kubernetes -f examples/kubernetes/kubernetes-pool.yaml --namespace provisioning
renders '^kind: ServiceAccount$' '^  name: provisionerd-kubernetes$' \
  '^automountServiceAccountToken: true$' \
  '^      serviceAccountName: provisionerd-kubernetes$' '^      automountServiceAccountToken: true$' \
  '^kind: Role$' '^kind: RoleBinding$' '^  name: kubernetes-provisionerd-workspace-perms$' \
  '^  namespace: coder-workspaces$' \
  '^    resources: \[pods, persistentvolumeclaims\]$' \
  '^    verbs: \[get, list, watch, create, update, patch, delete\]$' \
  '^  - kind: ServiceAccount$' '^    name: provisionerd-kubernetes$' '^    namespace: provisioning$'
renders_no 'automountServiceAccountToken: false' 'deployments' 'kind: ClusterRole' '^  annotations:$'
# Its commented cloud identities, set: annotations on the account.
check provisionerd kubernetes -f examples/kubernetes/kubernetes-pool.yaml --namespace provisioning \
  --set-string 'serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::123456789012:role/pd' \
  --set-string 'serviceAccount.annotations.iam\.gke\.io/gcp-service-account=pd@p.iam.gserviceaccount.com'
renders '^  annotations:$' '^    eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/pd$' \
  '^    iam.gke.io/gcp-service-account: pd@p.iam.gserviceaccount.com$'
# An existing account: not created, but the pods use it and get its token.
check provisionerd pool --set key.existingSecret=k --set serviceAccount.create=false \
  --set serviceAccount.name=workspaces --set serviceAccount.automountToken=true
renders '^      serviceAccountName: workspaces$' '^      automountServiceAccountToken: true$'
renders_no 'kind: ServiceAccount' 'kind: Role'
# The Role in the release's namespace when none is named, with Deployments
# and extra rules.
check provisionerd pool --set key.existingSecret=k --namespace ws --set serviceAccount.workspacePerms=true \
  --set serviceAccount.enableDeployments=true \
  --set-json 'serviceAccount.extraRules=[{"apiGroups":[""],"resources":["services"],"verbs":["get"]}]'
renders '^kind: Role$' '^  namespace: ws$' '^    resources: \[deployments\]$' '^  - apiGroups:$' '^    - services$'
check provisionerd pool --set key.existingSecret=k --set keda.enabled=true
# Each coordinator replica reports the whole queue: taken once, not summed.
renders 'sum(max without(instance, pod) (provisionerd_coordinator_jobs{'
check provisionerd pool --set key.value=pdk_example --set cache.persistence.enabled=true \
  --set coordinator.tls.clientCertSecret=client

refused "set key.existingSecret" provisionerd
# SQLite has one writer: several replicas need the database Secret. The
# schema refuses first; the template's own message holds without it.
refused "database/existingSecret" provisionerd-coordinator --set replicas=3
refused "replicas: 3 needs database.existingSecret" provisionerd-coordinator \
  --set replicas=3 --skip-schema-validation
refused "adminToken/existingSecret" provisionerd-coordinator --set database.existingSecret=pg
refused "database.url is not taken" provisionerd-coordinator \
  --set database.url=postgres://u:p@db/provisionerd --skip-schema-validation
refused "additional properties 'url' not allowed" provisionerd-coordinator \
  --set database.url=postgres://u:p@db/provisionerd
refused "must be at least daemon.cancelGraceSeconds + 10" provisionerd \
  --set key.existingSecret=k --set shutdown.terminationGracePeriodSeconds=60
refused "coordinator.url" provisionerd --set key.existingSecret=k --set coordinator.url=ftp://x
refused "daemon" provisionerd --set key.existingSecret=k --set daemon.maxJobs=1
refused "logFormat" provisionerd --set key.existingSecret=k --set daemon.logFormat=xml
# The namespace's default account is every unnamed pod's: not handed to
# templates unless named.
refused "serviceAccount.automountToken with serviceAccount.create=false needs serviceAccount.name" \
  provisionerd --set key.existingSecret=k --set serviceAccount.create=false \
  --set serviceAccount.automountToken=true
refused "serviceAccount.workspacePerms with serviceAccount.create=false needs serviceAccount.name" \
  provisionerd --set key.existingSecret=k --set serviceAccount.create=false \
  --set serviceAccount.workspacePerms=true
refused "/serviceAccount/name" provisionerd --set key.existingSecret=k --set serviceAccount.name=My_SA
refused "/serviceAccount/annotations/team': got number, want string" provisionerd \
  --set key.existingSecret=k --set serviceAccount.annotations.team=7
refused "/serviceAccount/workspaceNamespace" provisionerd --set key.existingSecret=k \
  --set serviceAccount.workspaceNamespace=Coder_Workspaces

# systemd units: verified with the binary path swapped for one that exists
# (the unit names /usr/local/bin/provisionerd, installed by the operator).
if ! command -v systemd-analyze >/dev/null; then
  apt-get update -qq >&2 && apt-get install -y -qq systemd >&2
fi
for unit in examples/systemd/*.service; do
  name=$(basename "$unit")
  sed "s#/usr/local/bin/provisionerd#$(command -v true)#" "$unit" > "$tmp/$name"
  out=$(systemd-analyze verify "$tmp/$name" 2>&1) || true
  if [ -n "$out" ]; then
    echo "$unit: systemd-analyze verify complained:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "== $unit: ok"
done
echo "deploy checks: ok"
