#!/usr/bin/env bash
# sansa's test command: everything CI runs. Installs what it needs (Rust components, the
# pinned kafka-clients jar via Maven) and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")"

start=$(date +%s)
# Each step heading says how long the run has taken so far, so a slow CI run shows where.
step() { printf '\n==> [%ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "rustfmt and clippy components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "formatting"
cargo fmt --all -- --check

step "generated protocol code matches the pinned Kafka specs"
cargo run -q -p sansa-codegen -- --check

step "clippy"
cargo clippy -q --workspace --all-targets -- -D warnings

# Every cargo command below selects the whole workspace (no -p), so that each profile compiles
# the generated crate once: a narrower selection unifies other features. (The versions Kafka
# marks unstable round-trip in the unit tests, which accept them on the test's own thread.)
step "unit, generated round-trip, golden-vector and hostile-input tests"
cargo test -q --workspace 2>&1 | tee target/test-output.txt | grep -E '^(test result|failures|---- )' || true
if grep -qE 'test result: FAILED|error(\[E[0-9]+\])?:' target/test-output.txt; then
  cat target/test-output.txt
  exit 1
fi

step "the Java client reads back batches sansa encoded"
cargo build -q --workspace --bins --examples
batches=target/sansa-batches
rm -rf "$batches"
target/debug/write-vectors "$batches"
conformance/java/run.sh verify "$batches" | grep -v '^ok '

step "sansa demo against an in-process fake cluster"
target/debug/sansa demo --records 6000

step "your own event loop: sansa::Client driven by a hand-written mio loop, no async runtime"
target/debug/examples/own_event_loop

kafka=conformance/kafka/kafka
started_kafka=()
sim_build=
cleanup() {
  kill -- "-$sim_build" 2>/dev/null || true
  for v in "${started_kafka[@]}"; do "$kafka" down --version "$v" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# The simulator's optimised build (a profile of its own, so every crate compiles again) runs
# in the background, niced, while the live suites below mostly wait on Kafka; its step waits
# for it.
# (setsid: its own process group, which the exit trap stops if the run ends before it does.)
setsid -w nice -n 19 cargo build -q --profile sim --workspace --bin sim >target/sim-build.txt 2>&1 &
sim_build=$!

step "live suite (client, producer, consumer) on all three runtimes against a real 3-broker Kafka ${KAFKA_BOOTSTRAP:+(using KAFKA_BOOTSTRAP)}"
external="${KAFKA_BOOTSTRAP:+yes}"
if [ -z "$external" ]; then
  "$kafka" down --version 4.3 --brokers 3 >/dev/null 2>&1 || true
  started_kafka+=(4.3)
  # KIP-848 sessions are the brokers' setting (45 s by default): short ones let the consumer
  # suite see a killed member leave in seconds. Racks and the rack-aware replica selector let
  # it read from the nearest replica (KIP-392).
  # Brokers fenced 4 s after their last heartbeat (9 s by default): the crash tests wait for
  # that before partitions move.
  KAFKA_BOOTSTRAP="$("$kafka" up --brokers 3 --version 4.3 --set broker.session.timeout.ms=4000 \
    --set group.consumer.session.timeout.ms=6000 --set group.consumer.min.session.timeout.ms=6000 \
    --set group.consumer.heartbeat.interval.ms=1000 --set group.consumer.min.heartbeat.interval.ms=500 \
    --set broker.rack=rack-@NODE_ID@ --set replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector \
    | tail -n 1)"
  export KAFKA_BROKERS=3 KAFKA_CRASH_TESTS=1 SANSA_JAVA_READBACK=1
fi
export KAFKA_BOOTSTRAP
# One cargo invocation runs the live tests of sansa-async-std, sansa-blocking and sansa-tokio in turn.
cargo test -q --workspace --test live -- --ignored --test-threads 1 --nocapture 2>&1 | tee target/live.txt | grep -E '^(test result|live scenario)' || true
[ "$(grep -c 'test result: ok' target/live.txt)" -eq 3 ] || { cat target/live.txt; exit 1; }
echo "differential test (sansa-blocking): $(grep -c '^- ' target/differential.md) known differences, report in target/differential.md"

step "live security suite on all three runtimes: SASL_PLAINTEXT, SSL and SASL_SSL listeners of a 1-node Kafka"
# A second, single-node cluster with the security listeners; stopped again right after.
if [ -z "${KAFKA_SECURITY_CLIENTS:-}" ]; then
  "$kafka" up --brokers 1 --version 4.3 --security | head -n -1 >target/kafka-security-clients.txt
  export KAFKA_SECURITY_CLIENTS="$PWD/target/kafka-security-clients.txt"
  stop_secure=yes
fi
cargo test -q --workspace --test live_security -- --ignored --test-threads 1 --nocapture 2>&1 | tee target/live-security.txt | grep -E '^(test result|live security)' || true
[ "$(grep -c 'test result: ok' target/live-security.txt)" -eq 3 ] || { cat target/live-security.txt; exit 1; }
# The CLI reads the script's properties files as Kafka's own tools do.
while read -r listener mechanism file; do
  # KAFKA_BOOTSTRAP (the 3-broker cluster) stands for -b, which would override the file's bootstrap.servers.
  env -u KAFKA_BOOTSTRAP target/debug/sansa metadata --command-config "$file" >/dev/null || { echo "sansa metadata --command-config failed: $listener $mechanism"; exit 1; }
done <"$KAFKA_SECURITY_CLIENTS"
echo "sansa metadata --command-config: ok for every listener and mechanism"
if [ "${stop_secure:-}" = yes ]; then "$kafka" down --version 4.3 --brokers 1 >/dev/null 2>&1 || true; fi

step "sansa demo against the real cluster"
target/debug/sansa demo -b "$KAFKA_BOOTSTRAP" --records 6000

step "sansa produce and perf produce against the real cluster"
topic="sansa-cli-$(date +%s)"
seq 1 1000 | sed 's/^/key-/; s/$/::value/' | target/debug/sansa produce -b "$KAFKA_BOOTSTRAP" -t "$topic" -k :: -H src=test.sh -X acks=all
target/debug/sansa perf produce --topic "$topic" --num-records 50000 --record-size 100 --throughput -1 \
  --bootstrap-server "$KAFKA_BOOTSTRAP" --producer-props acks=all linger.ms=5 compression.type=lz4 | tail -n 2

step "sansa consume and perf consume against the real cluster"
# The 1000 lines produced above come back first, in order (the topic has one partition).
out="$(target/debug/sansa consume -b "$KAFKA_BOOTSTRAP" -t "$topic" -o beginning -e -c 1000 -f '%p:%k=%s %h\n')"
if [ "$(wc -l <<<"$out")" -ne 1000 ] || [ "$(head -n 1 <<<"$out")" != "0:key-1=value src=test.sh" ] \
    || [ "$(tail -n 1 <<<"$out")" != "0:key-1000=value src=test.sh" ]; then
  echo "sansa consume read back $(wc -l <<<"$out") lines:"; head -n 3 <<<"$out"; exit 1
fi
# A group resumes where the last run committed; -e stops at the end of the partition.
group="sansa-cli-$(date +%s)"
target/debug/sansa consume -b "$KAFKA_BOOTSTRAP" -t "$topic" -g "$group" -c 400 -f '%k\n' >/dev/null
out="$(target/debug/sansa consume -b "$KAFKA_BOOTSTRAP" -t "$topic" -g "$group" -e -f '%o:%k\n')"
[ "$(head -n 1 <<<"$out")" = "400:key-401" ] && [ "$(wc -l <<<"$out")" -eq 50600 ] \
  || { echo "sansa consume -g resumed at $(head -n 1 <<<"$out") with $(wc -l <<<"$out") records"; exit 1; }
target/debug/sansa perf consume --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$topic" --messages 51000 | tail -n 2

step "sansa check-version against Kafka 4.3 and 3.9"
sansa=target/debug/sansa
out="$("$sansa" check-version -b "$KAFKA_BOOTSTRAP")"; echo "4.3 cluster: $out"
[ -n "$external" ] || grep -qx 'Apache Kafka 4.3' <<<"$out"
"$sansa" check-version --verbose -b "$KAFKA_BOOTSTRAP" >target/check-version-4.3.txt
if grep -q 'unusable\|unknown to sansa' target/check-version-4.3.txt; then cat target/check-version-4.3.txt; exit 1; fi
"$sansa" metadata -b "$KAFKA_BOOTSTRAP" >/dev/null
"$sansa" request -b "$KAFKA_BOOTSTRAP" ApiVersions --json '{}' >/dev/null
started_kafka+=(3.9)
bootstrap_39="$("$kafka" up --brokers 1 --version 3.9 | tail -n 1)"
out="$("$sansa" check-version -b "$bootstrap_39")"; echo "3.9 cluster: $out"
grep -qx 'Apache Kafka 3.9' <<<"$out"
"$kafka" down --version 3.9 >/dev/null

step "simulator: 500 seeded runs of client and fake cluster under faults; a replay repeats its trace"
wait "$sim_build" || { cat target/sim-build.txt; exit 1; }
target/sim/sim --seeds 0..500 >target/sim.txt 2>&1 || true
tail -n 2 target/sim.txt
tail -n 1 target/sim.txt | grep -qx '500 seeds, 0 failures' || { cat target/sim.txt; exit 1; }
first="$(target/sim/sim --seed 4242 --trace-hash)"
second="$(target/sim/sim --seed 4242 --trace-hash)"
echo "seed 4242 trace hash: $first, then $second"
[ -n "$first" ] && [ "$first" = "$second" ]
target/sim/sim --seeds 0..200 --trace-hash >target/sim-hashes-1.txt 2>/dev/null
target/sim/sim --seeds 0..200 --trace-hash >target/sim-hashes-2.txt 2>/dev/null
cmp target/sim-hashes-1.txt target/sim-hashes-2.txt && echo "seeds 0..200 replay with identical trace hashes"

step "simulator: every planted bug is caught by an invariant"
target/sim/sim --plants 2>/dev/null | tee target/sim-plants.txt
tail -n 1 target/sim-plants.txt | grep -qE '^([0-9]+) plants, \1 caught$'

step "benchmarks compile and run once (criterion's test mode, in the test profile)"
# (--bench '*': --benches would also select every lib and bin, and rerun their unit tests.)
cargo test -q --workspace --bench '*' >target/bench-test.txt 2>&1 || { cat target/bench-test.txt; exit 1; }

printf '\nall checks passed in %ss\n' "$(( $(date +%s) - start ))"
