#!/usr/bin/env bash
# `npm start`: the whole thing on this machine with its embedded default.
# Brings up what is missing (Kafka, a source PostgreSQL with the example shop schema, Kafka Connect
# with Debezium, Elasticsearch, InfluxDB; the machine's PostgreSQL and Redis are the sinks), registers the
# connector, runs a light live workload on the source and cdc-router on examples/shop.yaml with a
# progress line. Ctrl-C stops the workload and the router cleanly (servers stay up; scripts/*.sh down).
# Pointed at existing servers, it starts none of its own: set KAFKA_BROKERS, CONNECT_URL,
# SOURCE_PG_URL, TARGET_PG_URL, REDIS_URL, ES_URL, INFLUX_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund

[ -n "${KAFKA_BROKERS:-}" ] || bash scripts/kafka.sh up
[ -n "${ES_URL:-}" ] || bash scripts/elasticsearch.sh up
[ -n "${INFLUX_URL:-}" ] || bash scripts/influxdb.sh up
if [ -z "${SOURCE_PG_URL:-}" ]; then
  bash scripts/source-pg.sh up
  bash scripts/source-pg.sh psql -q -f scripts/sql/shop.sql -f scripts/sql/shop-seed.sql >/dev/null
fi
if [ -z "${CONNECT_URL:-}" ]; then
  bash scripts/connect.sh up
  bash scripts/connect.sh register connectors/debezium/shop-postgres.json
else
  curl -fsS -X PUT -H 'Content-Type: application/json' \
    --data "$(node -e 'process.stdout.write(JSON.stringify(require("./connectors/debezium/shop-postgres.json").config))')" \
    "$CONNECT_URL/connectors/shop-postgres/config" >/dev/null
fi

npx tsx scripts/shop-workload.ts &
workload=$!
trap 'kill -INT $workload 2>/dev/null || true; wait $workload 2>/dev/null || true' EXIT
echo "cdc-router: shop -> PostgreSQL (test.shop_replica), Redis (shop:*), Elasticsearch (shop-*); Ctrl-C to stop"
node bin/cdc-router.js run --config "${CDC_ROUTER_CONFIG:-examples/shop.yaml}" --progress
