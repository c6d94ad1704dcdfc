#!/usr/bin/env bash
# Golden test vectors from Apache Kafka's own Java classes.
#
#   conformance/java/run.sh generate OUTDIR   write messages.tsv, records.tsv, errors.tsv, partitions.tsv,
#                                             assignors.tsv
#   conformance/java/run.sh verify DIR        check DIR/batches.tsv (and DIR/messages.tsv if present)
#   conformance/java/run.sh readback BOOTSTRAP TOPIC
#                                             print TOPIC's records as Kafka's consumer reads them
#                                             (BOOTSTRAP @FILE: a client properties file, for TLS/SASL)
#   conformance/java/run.sh produce BOOTSTRAP TOPIC CODECS COUNT
#                                             produce with Kafka's producer, print what was sent
#   conformance/java/run.sh txn BOOTSTRAP TOPIC
#                                             committed and aborted transactions into TOPIC
#   conformance/java/run.sh group-consume BOOTSTRAP TOPIC GROUP PROTOCOL ASSIGNOR
#                                             a group member with Kafka's consumer until stdin closes
#
# The Kafka version comes from core/codegen/KAFKA_CLIENTS_VERSION and nowhere else. Maven is
# tried offline first, so once the local repository (~/.m2) is warm no network is needed; the
# build is skipped entirely while target/ is newer than the sources.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
version_file="$root/core/codegen/KAFKA_CLIENTS_VERSION"

usage() {
  echo "usage: $0 generate OUTDIR | verify DIR | readback BOOTSTRAP TOPIC | produce BOOTSTRAP TOPIC CODECS COUNT" \
    "| txn BOOTSTRAP TOPIC | group-consume BOOTSTRAP TOPIC GROUP PROTOCOL ASSIGNOR" >&2
  exit 2
}
case "${1:-}" in
  generate|verify) [ $# -eq 2 ] || usage ;;
  readback|txn) [ $# -eq 3 ] || usage ;;
  produce) [ $# -eq 5 ] || usage ;;
  group-consume) [ $# -eq 6 ] || usage ;;
  *) usage ;;
esac

[ -r "$version_file" ] || { echo "run.sh: cannot read $version_file" >&2; exit 2; }
version="$(tr -d '[:space:]' < "$version_file")"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || { echo "run.sh: no version in $version_file" >&2; exit 2; }

target="$here/target"
classpath_file="$target/classpath.txt"
stamp="$target/.built-for-kafka-$version"

# Rebuild when never built, built for another Kafka version, or any source is newer.
if [ ! -f "$stamp" ] || [ ! -f "$classpath_file" ] || [ ! -d "$target/classes" ] \
   || [ -n "$(find "$here/pom.xml" "$here/src" -newer "$stamp" -print -quit)" ]; then
  rm -f "$target"/.built-for-kafka-*
  mvn_args=(-q -B -f "$here/pom.xml" "-Dkafka.version=$version"
            compile dependency:build-classpath "-Dmdep.outputFile=$classpath_file")
  if ! mvn -o "${mvn_args[@]}" >/dev/null 2>&1; then
    mvn "${mvn_args[@]}" >&2   # online, to fill the local repository (or to show the real error); stdout is the modes' output
  fi
  touch "$stamp"
fi

exec java -cp "$target/classes:$(cat "$classpath_file")" sansa.conformance.Main "$@"
