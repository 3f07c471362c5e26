#!/usr/bin/env bash
# Apache Kafka (KRaft, single node) from Maven Central: install | up | down | status.
# Env: KAFKA_VERSION (default 4.1.1), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="${LOG4J_VERSION:-2.24.3}"
SLF4J_VERSION="${SLF4J_VERSION:-2.0.17}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
STATE="$RUN/kafka-$KAFKA_PORT"
PIDFILE="$STATE/kafka.pid"

install() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  log "installing Kafka $KAFKA_VERSION from Maven Central into $LIBS"
  # Kafka's POM leaves out the log4j2 backend that its release tarball bundles; add it here.
  maven_copy_deps "$LIBS" \
    "org.apache.kafka:kafka_2.13:$KAFKA_VERSION" \
    "org.apache.logging.log4j:log4j-core:$LOG4J_VERSION" \
    "org.apache.logging.log4j:log4j-slf4j2-impl:$LOG4J_VERSION" \
    "org.slf4j:slf4j-api:$SLF4J_VERSION"
  touch "$LIBS/.complete"
}

write_config() {
  mkdir -p "$STATE/data"
  cat >"$STATE/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$STATE/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
PROPS
  # Console-only logging: the stock log4j2 config needs the YAML parser, which we do not ship.
  cat >"$STATE/log4j2.properties" <<'L4J'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
L4J
}

java_cmd() {
  java -Xms256m -Xmx1g -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$STATE/log4j2.properties" \
    -cp "$LIBS/*" "$@"
}

up() {
  install
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then
    log "Kafka already running on 127.0.0.1:$KAFKA_PORT"; return 0
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process"
  write_config
  if [ ! -f "$STATE/data/meta.properties" ]; then
    java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" \
      -c "$STATE/server.properties" --ignore-formatted >"$STATE/format.log" 2>&1 \
      || { cat "$STATE/format.log" >&2; die "storage format failed"; }
  fi
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$STATE/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$STATE/server.properties" >"$STATE/kafka.log" 2>&1 &
  echo $! >"$PIDFILE"
  if ! wait_for 90 "Kafka" ready; then
    tail -50 "$STATE/kafka.log" >&2; die "Kafka did not become ready"
  fi
}

# Ready = the broker port answers and the broker logged its transition to RUNNING.
ready() { port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$STATE/kafka.log"; }

status() {
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then
    echo "kafka: running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"
  else
    echo "kafka: stopped"; return 1
  fi
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) stop_pid "$PIDFILE" Kafka ;;
  status) status ;;
  reset) stop_pid "$PIDFILE" Kafka; rm -rf "$STATE" ;;
  *) echo "usage: $0 install|up|down|status|reset" >&2; exit 2 ;;
esac
