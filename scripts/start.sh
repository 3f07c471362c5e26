#!/usr/bin/env bash
# `npm start`: the whole thing on this machine with its embedded default. Brings up Kafka, starts a
# light live workload of Debezium-shaped events, and runs cdc-router with examples/demo.yaml,
# printing progress. Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
bash scripts/kafka.sh up
mkdir -p .run/demo
npx tsx scripts/demo-producer.ts &
producer=$!
trap 'kill -INT $producer 2>/dev/null || true; wait $producer 2>/dev/null || true' EXIT
echo "cdc-router: writing changes to .run/demo/changes.jsonl (Ctrl-C to stop)"
node bin/cdc-router.js run --config "${CDC_ROUTER_CONFIG:-examples/demo.yaml}" --progress
