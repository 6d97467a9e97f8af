#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/) for SECONDS (default 30), seeded from
# the checked-in corpus in fuzz/corpus/<target>; fails on the first crash,
# leaving the input in fuzz/artifacts/<target>/. cargo-fuzz is installed
# into .tools/cargo-fuzz; stable Rust runs it with RUSTC_BOOTSTRAP=1.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
case $seconds in
    '' | *[!0-9]*)
        echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]: $seconds is not a number of seconds" >&2
        exit 64
        ;;
esac
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(archive_extract template_parse logparse)
fi

root=.tools/cargo-fuzz
version=0.13.2
if ! "$root/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$version"; then
    echo "--- installing cargo-fuzz $version into $root"
    cargo install cargo-fuzz --locked --version "$version" --root "$root"
fi
export PATH="$PWD/$root/bin:$PATH"
export RUSTC_BOOTSTRAP=1
# cargo-fuzz builds every dependency in release mode with the sanitizer;
# opt-level 1 instead of 3 cuts that build from about 8m50s to 6m55s of
# CI's time; a 30 s run still does 14-860 thousand executions per target.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${CARGO_PROFILE_RELEASE_OPT_LEVEL:-1}

# Inputs found while fuzzing go to a scratch corpus, so the checked-in
# seeds stay a few small files.
for target in "${targets[@]}"; do
    echo "--- fuzz $target for ${seconds}s"
    scratch=fuzz/target/corpus/$target
    mkdir -p "$scratch"
    # The example templates seed the template parser too (copied in, so
    # they live in one place in the repository).
    if [ "$target" = template_parse ]; then
        for example in examples/templates/*/main.tf; do
            cp "$example" "$scratch/example-$(basename "$(dirname "$example")").tf"
        done
        cp src/template/tfjson/coder-prebuilds.tf.json "$scratch/example-coder-prebuilds.tf.json"
    fi
    cargo fuzz run --fuzz-dir fuzz "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1
done
