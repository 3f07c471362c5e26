#!/usr/bin/env bash
# The test command (npm test): types, lint, then every test tier against real servers that the
# project's scripts start (Kafka, Elasticsearch, InfluxDB; the machine's PostgreSQL and Redis).
set -euo pipefail
cd "$(dirname "$0")/.."

export CDC_TEST_SERVERS="${CDC_TEST_SERVERS:-kafka,elasticsearch,registry,source-pg,connect,influxdb}"
started=()
for s in ${CDC_TEST_SERVERS//,/ }; do
  if ! bash "scripts/$s.sh" status >/dev/null 2>&1; then started+=("$s"); fi
  bash "scripts/$s.sh" up
done
# Servers this run started are stopped at the end under CI; locally they stay up for the next run.
cleanup() {
  if [ "${CI:-}" = "true" ]; then for s in "${started[@]}"; do bash "scripts/$s.sh" down || true; done; fi
}
trap cleanup EXIT

echo "== typecheck"; npx tsc --noEmit
echo "== lint"; npx eslint .
echo "== tests"; npx vitest run "$@"
