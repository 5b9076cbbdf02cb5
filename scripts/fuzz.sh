#!/usr/bin/env bash
# Builds every fuzz target (fuzz/), and with SECONDS > 0 also runs each one
# for that long, one after another.
#
#   scripts/fuzz.sh          build only
#   scripts/fuzz.sh check    type-check only (what CI runs, to keep the targets compiling)
#   scripts/fuzz.sh 180      run every target for 3 minutes, each built as it starts
#   scripts/fuzz.sh 60 rpz   run only the named targets
#
# Every run has an RSS limit (KANKI_FUZZ_RSS_MB, default 1024; libFuzzer's
# -rss_limit_mb, which also bounds any single allocation): a parser whose
# memory grows with its input crashes the run instead of passing. The
# sanitizer's own overhead is a few hundred MB of it.
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); with only the
# stable toolchain installed, RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-0}"
shift || true

rss_mb="${KANKI_FUZZ_RSS_MB:-1024}"
export RUSTC_BOOTSTRAP=1
# SQLite's amalgamation has several function-local statics of one name
# (`aiOff`); AddressSanitizer's ODR check takes them for one global defined
# twice and aborts any target that links SQLite before its first input.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
export CARGO_TARGET_DIR="${KANKI_FUZZ_TARGET_DIR:-${HOME}/.cache/kanki/target-fuzz}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
if [ "$seconds" = "check" ]; then
    exec cargo fuzz check --features fuzz-targets
fi
if [ "$seconds" -eq 0 ]; then
    exec cargo fuzz build --features fuzz-targets
fi

# Each target is built as its run starts (`cargo fuzz run` builds only
# it): named targets start fuzzing without building all the others first.
if [ "$seconds" -gt 0 ]; then
    targets=("$@")
    if [ "${#targets[@]}" -eq 0 ]; then
        mapfile -t targets < <(cargo fuzz list)
    fi
    for t in "${targets[@]}"; do
        # New inputs go to corpus/ (gitignored); the committed seeds are read only.
        mkdir -p "corpus/$t"
        echo "== fuzzing $t for ${seconds}s"
        cargo fuzz run --features fuzz-targets "$t" "corpus/$t" "seeds/$t" -- \
            -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -print_final_stats=1
    done
fi
