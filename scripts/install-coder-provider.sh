#!/usr/bin/env bash
# Builds the tests' stand-in for Coder's terraform provider
# (tests/coder-provider) and serves it to terraform from a filesystem mirror:
#
#   DIR/provider-mirror/registry.terraform.io/coder/coder/VERSION/linux_amd64/
#       terraform-provider-coder_vVERSION
#   DIR/coder-provider.tfrc    a CLI config using that mirror for coder/coder
#
#   scripts/install-coder-provider.sh [DIR]     (default: .tools)
#
# Point TF_CLI_CONFIG_FILE at the printed tfrc (its path is the last line).
# Idempotent and quick when up to date: cargo only rebuilds what changed and
# the mirror and config are rewritten only when they differ. Installs protoc
# (apt package protobuf-compiler) when it is missing: the provider's
# tf-provider dependency generates its gRPC code with it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/.tools}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# The version terraform sees. Templates pin coder/coder to 2.x (e.g.
# `>= 2.0`, `~> 2.5`), so the stand-in claims a recent 2.x release.
version=2.13.1
platform=linux_amd64

if ! command -v protoc >/dev/null 2>&1; then
  echo "installing protoc (apt package protobuf-compiler)" >&2
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >&2
fi

# The workspace's own target dir (or CARGO_TARGET_DIR): the release build
# shares nothing with the debug test builds, but stays out of .tools, which
# several work trees may share.
(cd "$root" && cargo build --release --locked -p coder-provider >&2)
target=${CARGO_TARGET_DIR:-$root/target}
built=$target/release/terraform-provider-coder

mirror=$dir/provider-mirror
versions=$mirror/registry.terraform.io/coder/coder
dest=$versions/$version/$platform/terraform-provider-coder_v$version
mkdir -p "$(dirname "$dest")"
if ! cmp -s "$built" "$dest"; then
  cp "$built" "$dest.tmp"
  mv "$dest.tmp" "$dest"
fi
# Only one version in the mirror, so a template can never pick a stale one.
for other in "$versions"/*; do
  if [ "$other" != "$versions/$version" ]; then rm -rf "$other"; fi
done

tfrc=$dir/coder-provider.tfrc
cat > "$tfrc.tmp" <<TFRC
# Written by scripts/install-coder-provider.sh: coder/coder comes from the
# local mirror only; every other provider is installed as usual.
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/coder/coder"]
  }
  direct {
    exclude = ["registry.terraform.io/coder/coder"]
  }
}
TFRC
if cmp -s "$tfrc.tmp" "$tfrc"; then rm "$tfrc.tmp"; else mv "$tfrc.tmp" "$tfrc"; fi
echo "$tfrc"
