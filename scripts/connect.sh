#!/usr/bin/env bash
# Kafka Connect (distributed worker, one node) with the Debezium PostgreSQL connector, all from Maven
# Central: install | up | down | status | reset | register FILE [key=value...] | delete NAME
#   bash scripts/kafka.sh up && bash scripts/source-pg.sh up && bash scripts/connect.sh up
#   bash scripts/connect.sh register connectors/debezium/shop-postgres.json
# `register` PUTs /connectors/<name>/config (create or update, idempotent) from a Kafka Connect REST
# JSON file ({"name": ..., "config": {...}}); key=value arguments override config entries (name=X
# renames the connector, e.g. a second copy with its own topic.prefix and slot.name). It waits
# until the connector and all its tasks are RUNNING and prints the trace when one FAILED.
# `reset` stops the worker, deletes its internal topics (configs, offsets, status: registered
# connectors and their source offsets are forgotten) and its state dir. It leaves the data topics
# (shop.*) and the replication slot / publication in the source database alone.
# Env: CONNECT_VERSION (default: KAFKA_VERSION's default in scripts/kafka.sh), DEBEZIUM_VERSION,
#      CONNECT_PORT (8083), CONNECT_BOOTSTRAP (127.0.0.1:${KAFKA_PORT:-9092}), CONNECT_HEAP (768m),
#      CONNECT_SCHEMAS_ENABLE (true: JsonConverter envelopes carry {"schema","payload"}),
#      CONNECT_START_TIMEOUT (180 s), CONNECT_JAVA (java).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Same version as the broker: take KAFKA_VERSION's default from kafka.sh, so the two move together.
KAFKA_DEFAULT_VERSION="$(sed -n 's/^KAFKA_VERSION="\${KAFKA_VERSION:-\([^}]*\)}"$/\1/p' "$ROOT/scripts/kafka.sh")"
CONNECT_VERSION="${CONNECT_VERSION:-${KAFKA_VERSION:-${KAFKA_DEFAULT_VERSION:-4.1.1}}}"
# Newest 3.x whose plugin archive Maven Central serves (3.7.1 has a POM but no archive); built
# against Kafka 4.3 yet runs on the 4.1 runtime. 3.4.3.Final is the one built against 4.1.1.
DEBEZIUM_VERSION="${DEBEZIUM_VERSION:-3.7.0.Final}"
LOG4J_VERSION="${LOG4J_VERSION:-2.24.3}"
SLF4J_VERSION="${SLF4J_VERSION:-2.0.17}"
CONNECT_PORT="${CONNECT_PORT:-8083}"
CONNECT_BOOTSTRAP="${CONNECT_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}"
CONNECT_HEAP="${CONNECT_HEAP:-768m}"
CONNECT_SCHEMAS_ENABLE="${CONNECT_SCHEMAS_ENABLE:-true}"
CONNECT_JAVA="${CONNECT_JAVA:-java}"
LIBS="$CACHE/connect-$CONNECT_VERSION/libs"
PLUGINS="$CACHE/debezium-$DEBEZIUM_VERSION/plugins"
STATE="$RUN/connect-$CONNECT_PORT"
PIDFILE="$STATE/connect.pid"
URL="http://127.0.0.1:$CONNECT_PORT"
# Worker group and internal topics, unique per REST port so two workers never join one cluster.
GROUP="cdc-router-connect-$CONNECT_PORT"
TOPICS=("$GROUP-configs" "$GROUP-offsets" "$GROUP-status")
PG_CONNECTOR_CLASS="io.debezium.connector.postgresql.PostgresConnector"

install_connect() {
  [ -f "$LIBS/.complete" ] && return 0
  log "installing Kafka Connect $CONNECT_VERSION from Maven Central into $LIBS"
  # Download beside LIBS, then move: maven_copy_deps names its pom dir after the last path element.
  local dl="$CACHE/connect-$CONNECT_VERSION-download"
  rm -rf "$dl" "$LIBS"
  # Like kafka.sh: the POMs leave out the log4j2 backend that the release tarball bundles.
  maven_copy_deps "$dl" \
    "org.apache.kafka:connect-runtime:$CONNECT_VERSION" \
    "org.apache.kafka:connect-json:$CONNECT_VERSION" \
    "org.apache.kafka:connect-transforms:$CONNECT_VERSION" \
    "org.apache.logging.log4j:log4j-core:$LOG4J_VERSION" \
    "org.apache.logging.log4j:log4j-slf4j2-impl:$LOG4J_VERSION" \
    "org.slf4j:slf4j-api:$SLF4J_VERSION"
  mkdir -p "$(dirname "$LIBS")"
  mv "$dl" "$LIBS"
  rm -rf "$CACHE/pom-connect-$CONNECT_VERSION-download"
  touch "$LIBS/.complete"
}

install_debezium() {
  [ -f "$PLUGINS/.complete" ] && return 0
  log "installing Debezium PostgreSQL connector $DEBEZIUM_VERSION from Maven Central into $PLUGINS"
  # The archive holds one folder, debezium-connector-postgres/, with all the plugin's jars.
  maven_unpack "io.debezium:debezium-connector-postgres:$DEBEZIUM_VERSION:tar.gz:plugin" "$PLUGINS"
  touch "$PLUGINS/.complete"
}

install() { install_connect; install_debezium; }

write_config() {
  mkdir -p "$STATE"
  cat >"$STATE/worker.properties" <<PROPS
# Written by scripts/connect.sh on every start; edit the script, not this file.
bootstrap.servers=$CONNECT_BOOTSTRAP
group.id=$GROUP
config.storage.topic=${TOPICS[0]}
offset.storage.topic=${TOPICS[1]}
status.storage.topic=${TOPICS[2]}
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=5
status.storage.partitions=1
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=$CONNECT_SCHEMAS_ENABLE
value.converter.schemas.enable=$CONNECT_SCHEMAS_ENABLE
plugin.path=$PLUGINS
# Debezium's jars carry ServiceLoader manifests: skip the slow reflective scan of every jar.
plugin.discovery=service_load
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
rest.advertised.listener=http
# Tests want source offsets committed quickly.
offset.flush.interval.ms=1000
# Topics that Debezium creates (data, transaction, heartbeat) get one replica on a one-node broker.
topic.creation.enable=true
PROPS
  cat >"$STATE/log4j2.properties" <<'L4J'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.common.name = org.apache.kafka.common
logger.common.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
logger.jetty.name = org.eclipse.jetty
logger.jetty.level = WARN
L4J
}

plugins_ready() {
  curl -fsS --max-time 2 "$URL/connector-plugins" 2>/dev/null | grep -q "\"$PG_CONNECTOR_CLASS\""
}

up() {
  install
  if pid_alive "$PIDFILE" && plugins_ready; then
    log "Kafka Connect already running on $URL (pid $(cat "$PIDFILE"))"; return 0
  fi
  if pid_alive "$PIDFILE"; then
    log "Kafka Connect pid $(cat "$PIDFILE") alive but not ready: waiting for it"
  else
    port_open "$CONNECT_PORT" && die "port $CONNECT_PORT is taken by another process"
    port_open "${CONNECT_BOOTSTRAP##*:}" \
      || die "Kafka not reachable at $CONNECT_BOOTSTRAP (start it: bash scripts/kafka.sh up)"
    write_config
    log "starting Kafka Connect $CONNECT_VERSION (Debezium $DEBEZIUM_VERSION) on $URL"
    # cd first, on its own: `cd && nohup java &` would background a subshell, not java.
    (cd "$STATE" || exit 1
      nohup "$CONNECT_JAVA" -Xms128m -Xmx"$CONNECT_HEAP" -XX:+UseG1GC \
      -XX:MaxMetaspaceSize=256m -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$STATE/log4j2.properties" \
      -cp "$LIBS/*" org.apache.kafka.connect.cli.ConnectDistributed "$STATE/worker.properties" \
      >"$STATE/connect.log" 2>&1 &
      echo $! >"$PIDFILE")
  fi
  local deadline=$((SECONDS + ${CONNECT_START_TIMEOUT:-180}))
  until plugins_ready; do
    if ! pid_alive "$PIDFILE"; then
      tail -40 "$STATE/connect.log" >&2; die "Kafka Connect exited during startup"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -40 "$STATE/connect.log" >&2; die "Kafka Connect not ready after ${CONNECT_START_TIMEOUT:-180}s"
    fi
    sleep 1
  done
  log "Kafka Connect is up on $URL (pid $(cat "$PIDFILE")), $PG_CONNECTOR_CLASS available"
}

status() {
  if pid_alive "$PIDFILE" && plugins_ready; then
    echo "connect: running (pid $(cat "$PIDFILE")) on $URL; connectors: $(curl -fsS "$URL/connectors")"
  else
    echo "connect: stopped"; return 1
  fi
}

require_up() { plugins_ready || die "Kafka Connect is not running on $URL (bash scripts/connect.sh up)"; }

# connector_state NAME: prints "<connector state> <task states...>" or nothing.
connector_state() {
  curl -fsS --max-time 5 "$URL/connectors/$1/status" 2>/dev/null \
    | jq -r '[.connector.state] + [.tasks[].state] | join(" ")' 2>/dev/null || true
}

register() {
  local file="${1:-}"; shift || true
  [ -f "$file" ] || die "usage: $0 register FILE [key=value...] (Kafka Connect REST JSON)"
  require_up
  local name config override
  name="$(jq -er '.name' "$file")" || die "$file has no .name"
  config="$(jq -ce --arg name "$name" '.config + {name: $name}' "$file")" || die "$file has no .config"
  for override in "$@"; do
    [[ "$override" == *=* ]] || die "override '$override' is not key=value"
    [ "${override%%=*}" = name ] && name="${override#*=}"
    config="$(jq -c --arg k "${override%%=*}" --arg v "${override#*=}" '.[$k] = $v' <<<"$config")"
  done
  log "registering connector $name from $file"
  local body code
  body="$(mktemp)"
  code="$(curl -sS -o "$body" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data-binary "$config" "$URL/connectors/$name/config")"
  case "$code" in
    200|201) ;;
    *) cat "$body" >&2; echo >&2; rm -f "$body"; die "PUT /connectors/$name/config answered $code" ;;
  esac
  rm -f "$body"
  local deadline=$((SECONDS + ${CONNECT_REGISTER_TIMEOUT:-120})) state=""
  while :; do
    state="$(connector_state "$name")"
    if [[ " $state " == *" FAILED "* ]]; then
      curl -fsS "$URL/connectors/$name/status" | jq -r '
        "connector: \(.connector.state)", (.connector.trace // empty),
        (.tasks[] | "task \(.id): \(.state)", (.trace // empty))' >&2
      die "connector $name FAILED"
    fi
    # RUNNING with at least one task, every task RUNNING.
    if [[ "$state" =~ ^RUNNING( RUNNING)+$ ]]; then break; fi
    if [ $SECONDS -ge $deadline ]; then
      die "connector $name not RUNNING after ${CONNECT_REGISTER_TIMEOUT:-120}s (state: ${state:-none})"
    fi
    sleep 1
  done
  log "connector $name RUNNING ($state)"
}

delete() {
  local name="${1:-}"
  [ -n "$name" ] || die "usage: $0 delete NAME"
  require_up
  local code
  code="$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$URL/connectors/$name")"
  case "$code" in
    204|200) log "connector $name deleted" ;;
    404) log "connector $name not registered" ;;
    *) die "DELETE /connectors/$name answered $code" ;;
  esac
}

# Delete the worker's internal topics with the Admin client that Connect ships (kafka-clients),
# through Java's single-file source launcher: no extra tool to install.
delete_internal_topics() {
  port_open "${CONNECT_BOOTSTRAP##*:}" || { log "Kafka not reachable: internal topics kept"; return 0; }
  [ -f "$LIBS/.complete" ] || return 0
  local src="$RUN/connect-reset/DeleteTopics.java"
  mkdir -p "$(dirname "$src")"
  cat >"$src" <<'JAVA'
import java.util.*;
import org.apache.kafka.clients.admin.*;

public class DeleteTopics {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    try (Admin admin = Admin.create(props)) {
      Set<String> existing = admin.listTopics().names().get();
      List<String> doomed = new ArrayList<>();
      for (int i = 1; i < args.length; i++) if (existing.contains(args[i])) doomed.add(args[i]);
      if (!doomed.isEmpty()) admin.deleteTopics(doomed).all().get();
      System.out.println("deleted topics: " + doomed);
    }
  }
}
JAVA
  "$CONNECT_JAVA" -cp "$LIBS/*" -Dlog4j2.level=ERROR -Dorg.slf4j.simpleLogger.defaultLogLevel=error \
    "$src" "$CONNECT_BOOTSTRAP" "${TOPICS[@]}" 2>/dev/null | while read -r line; do log "$line"; done
  rm -rf "$RUN/connect-reset"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) stop_pid "$PIDFILE" "Kafka Connect" ;;
  status) status ;;
  reset) stop_pid "$PIDFILE" "Kafka Connect"; delete_internal_topics; rm -rf "$STATE" ;;
  register) shift; register "$@" ;;
  delete) shift; delete "$@" ;;
  *) echo "usage: $0 install|up|down|status|reset|register FILE [key=value...]|delete NAME" >&2; exit 2 ;;
esac
