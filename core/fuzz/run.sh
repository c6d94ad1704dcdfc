#!/usr/bin/env bash
# Builds and runs sansa's fuzz targets one after another, one libFuzzer process at a time.
#
#   core/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# Needs nightly Rust and cargo-fuzz (`cargo install cargo-fuzz`). Seeds the corpora first
# (examples/seed.rs; corpus/ and artifacts/ are git-ignored). Prints per target the executions
# (libFuzzer's stat::number_of_executed_units), exec/s, corpus size and whether it crashed;
# exits 1 if any target crashed. Crash inputs land in core/fuzz/artifacts/<target>/; reproduce
# one with `cargo +nightly fuzz run <target> <file>` and shrink it with `cargo +nightly fuzz tmin`.
#
# Environment: FUZZ_SANITIZER=address|none (default: address when it works, else none),
# FUZZ_ARGS="..." extra libFuzzer flags, FUZZ_NO_SEED=1 skips seeding.
set -euo pipefail

SECS="${1:-60}"
shift || true
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DIR"
ALL_TARGETS=(decode_response decode_request decode_records frame)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

# Release optimisation with debug assertions and overflow checks (cargo-fuzz's default).
BUILD_FLAGS=(-O -a --fuzz-dir "$DIR")

build() {
    cargo +nightly fuzz build "${BUILD_FLAGS[@]}" -s "$1" "${TARGETS[@]:0:1}" >"$DIR/logs/build.log" 2>&1 &&
        for t in "${TARGETS[@]:1}"; do
            cargo +nightly fuzz build "${BUILD_FLAGS[@]}" -s "$1" "$t" >>"$DIR/logs/build.log" 2>&1 || return 1
        done
}

mkdir -p logs
SAN="${FUZZ_SANITIZER:-}"
if [ -z "$SAN" ]; then
    echo "building with AddressSanitizer..."
    if build address && target/x86_64-unknown-linux-gnu/release/"${TARGETS[0]}" -runs=0 >/dev/null 2>&1; then
        SAN=address
    else
        echo "AddressSanitizer unavailable (see logs/build.log); building without a sanitizer"
        SAN=none
        build none || { tail -30 logs/build.log; exit 2; }
    fi
else
    echo "building with sanitizer=$SAN..."
    build "$SAN" || { tail -30 logs/build.log; exit 2; }
fi

if [ -z "${FUZZ_NO_SEED:-}" ]; then
    cargo +nightly run -q --release --example seed -- "$DIR/corpus" >logs/seed.log 2>&1 || { cat logs/seed.log; exit 2; }
fi

crashed=0
summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "logs/$t"
    before=$(ls "artifacts/$t" | wc -l)
    echo "fuzzing $t for ${SECS}s (sanitizer=$SAN)..."
    rm -f "logs/$t"/fuzz-*.log
    # -jobs=1 -workers=1: libFuzzer runs one worker process whose output goes to fuzz-0.log
    # in the working directory.
    set +e
    (cd "logs/$t" && cargo +nightly fuzz run "${BUILD_FLAGS[@]}" -s "$SAN" "$t" "$DIR/corpus/$t" -- \
        -jobs=1 -workers=1 -max_total_time="$SECS" -print_final_stats=1 -timeout=20 \
        -artifact_prefix="$DIR/artifacts/$t/" ${FUZZ_ARGS:-}) >"logs/$t/run.log" 2>&1
    rc=$?
    set -e
    log="logs/$t/fuzz-0.log"
    [ -f "$log" ] || log="logs/$t/run.log"
    execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -1 | awk '{print $2}')
    eps=$(grep -a 'stat::average_exec_per_sec' "$log" | tail -1 | awk '{print $2}')
    corpus=$(ls "corpus/$t" | wc -l)
    after=$(ls "artifacts/$t" | wc -l)
    if [ "$after" -gt "$before" ] || grep -aqE '^==[0-9]+==ERROR|panicked at|deadly signal|SUMMARY: libFuzzer' "$log"; then
        crashed=1
        result="CRASH ($(ls -t "artifacts/$t" | head -1); log: core/fuzz/$log)"
    elif [ "$rc" -ne 0 ]; then
        crashed=1
        result="FAILED (exit $rc; log: core/fuzz/logs/$t/run.log)"
    else
        result="no crash"
    fi
    line=$(printf '%-16s executions=%-10s exec/s=%-7s corpus=%-6s %s' "$t" "${execs:-?}" "${eps:-?}" "$corpus" "$result")
    echo "$line"
    summary+=("$line")
done

echo
echo "== summary (${SECS}s per target, sanitizer=$SAN) =="
printf '%s\n' "${summary[@]}"
exit "$crashed"
