#!/usr/bin/env bash
# Runs one fuzz target for a bounded time:  fuzz/run.sh TARGET SECONDS [libFuzzer args...]
#
# TARGET is decode, session, pair or ext. Needs cargo-fuzz (`cargo install cargo-fuzz`); the
# stable toolchain is enough, RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags it passes.
# libFuzzer reads the seed corpus fuzz/corpus/TARGET/ and the recorded findings in
# fuzz/regressions/TARGET/, and writes new inputs to fuzz/work/TARGET/ (not in git),
# so the committed corpus stays small. A crash leaves its input in
# fuzz/artifacts/TARGET/: copy it to fuzz/regressions/TARGET/ once understood, so
# `cargo test -p smux-fuzzing --test fuzz_replay` replays it (the checks live in
# smux-fuzzing/, shared by the targets and that test).
# The targets are built without a sanitizer by default (smux-proto forbids unsafe code,
# and it doubles the throughput), with debug assertions and overflow checks on; set
# SMUX_FUZZ_SANITIZER=address (or another cargo-fuzz sanitizer) to change that.
# Exit status: 0 when no crash was found, non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")"

target="${1:?usage: fuzz/run.sh TARGET SECONDS [libFuzzer args...]}"
seconds="${2:?usage: fuzz/run.sh TARGET SECONDS [libFuzzer args...]}"
shift 2
case "$target" in
decode | session | pair | ext) ;;
*)
    echo "unknown target '$target' (decode, session, pair, ext)" >&2
    exit 2
    ;;
esac

mkdir -p "work/$target" "corpus/$target" "regressions/$target"
RUSTC_BOOTSTRAP=1 exec cargo fuzz run --sanitizer "${SMUX_FUZZ_SANITIZER:-none}" "$target" \
    "work/$target" "corpus/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
