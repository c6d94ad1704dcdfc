#!/usr/bin/env bash
# sansa's test command: everything CI runs. Installs what it needs (Rust components, the
# pinned kafka-clients jar via Maven) and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

step "rustfmt and clippy components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "formatting"
cargo fmt --all -- --check

step "generated protocol code matches the pinned Kafka specs"
cargo run -q -p sansa-codegen -- --check

step "clippy"
cargo clippy -q --workspace --all-targets -- -D warnings

step "unit, generated round-trip, golden-vector and hostile-input tests"
cargo test -q --workspace 2>&1 | tee target/test-output.txt | grep -E '^(test result|failures|---- )' || true
if grep -qE 'test result: FAILED|error(\[E[0-9]+\])?:' target/test-output.txt; then
  cat target/test-output.txt
  exit 1
fi

step "the Java client reads back batches sansa encoded"
batches=target/sansa-batches
rm -rf "$batches"
cargo run -q -p sansa-conformance --bin write-vectors -- "$batches"
conformance/java/run.sh verify "$batches" | grep -v '^ok '

step "API versions Kafka still marks unstable (feature unstable-versions) round-trip too"
cargo test -q -p sansa --features unstable-versions --lib protocol::messages 2>&1 | grep -E '^test result' 

step "benchmarks compile and run once"
cargo bench -q -p sansa --bench records -- --test >/dev/null

printf '\nall checks passed in %ss\n' "$(( $(date +%s) - start ))"
