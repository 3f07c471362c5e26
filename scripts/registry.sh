#!/usr/bin/env bash
# Apicurio Registry 3.x (in-memory storage) from Maven Central, with the Confluent-compatible API
# under /apis/ccompat/v7: install | up | down | status | reset
#   bash scripts/registry.sh up
#   curl -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
#     --data '{"schema":"{\"type\":\"string\"}"}' \
#     http://127.0.0.1:8081/apis/ccompat/v7/subjects/demo-value/versions      # -> {"id":1}
# Apicurio 3.x is built for Java 21: the script picks the first JDK >= 21 under /usr/lib/jvm
# (Temurin's on these machines) unless REGISTRY_JAVA_HOME says otherwise. Schemas live in memory
# (H2) and are gone after `down`.
# Env: REGISTRY_VERSION (3.3.3), REGISTRY_PORT (8081), REGISTRY_MANAGEMENT_PORT (REGISTRY_PORT+1:
#      the Quarkus management interface), REGISTRY_JAVA_HOME, REGISTRY_HEAP (384m).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY_VERSION="${REGISTRY_VERSION:-3.3.3}"
REGISTRY_PORT="${REGISTRY_PORT:-8081}"
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-$((REGISTRY_PORT + 1))}"
REGISTRY_HEAP="${REGISTRY_HEAP:-384m}"
HOME_DIR="$CACHE/apicurio-registry-$REGISTRY_VERSION"
STATE="$RUN/registry-$REGISTRY_PORT"
PIDFILE="$STATE/registry.pid"
URL="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"

install() {
  [ -f "$HOME_DIR/.complete" ] && return 0
  log "installing Apicurio Registry $REGISTRY_VERSION from Maven Central into $HOME_DIR"
  # The `all` assembly is the Quarkus fast-jar app (quarkus-run.jar, lib/, app/, quarkus/), ~160 MB.
  maven_unpack "io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all" "$HOME_DIR"
  [ -f "$HOME_DIR/quarkus-run.jar" ] || die "unexpected archive layout: no quarkus-run.jar"
  touch "$HOME_DIR/.complete"
}

java_major() { "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }

find_java() {
  if [ -n "${REGISTRY_JAVA_HOME:-}" ]; then echo "$REGISTRY_JAVA_HOME/bin/java"; return 0; fi
  local j m
  for j in java /usr/lib/jvm/*/bin/java; do
    command -v "$j" >/dev/null 2>&1 || continue
    m="$(java_major "$j")"
    if [ -n "$m" ] && [ "$m" -ge 21 ]; then echo "$j"; return 0; fi
  done
  return 1
}

ready() { curl -fsS --max-time 2 "$URL/subjects" >/dev/null 2>&1; }

up() {
  install
  if pid_alive "$PIDFILE" && ready; then
    log "Apicurio Registry already running on $URL (pid $(cat "$PIDFILE"))"; return 0
  fi
  if pid_alive "$PIDFILE"; then
    log "Apicurio Registry pid $(cat "$PIDFILE") alive but not ready: waiting for it"
  else
    port_open "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by another process"
    port_open "$REGISTRY_MANAGEMENT_PORT" && die "port $REGISTRY_MANAGEMENT_PORT is taken by another process"
    local java
    java="$(find_java)" || die "Apicurio Registry $REGISTRY_VERSION needs Java 21+: none under /usr/lib/jvm (set REGISTRY_JAVA_HOME)"
    mkdir -p "$STATE/tmp"
    log "starting Apicurio Registry $REGISTRY_VERSION on http://127.0.0.1:$REGISTRY_PORT ($java)"
    (cd "$STATE" || exit 1
      nohup "$java" -Xms64m -Xmx"$REGISTRY_HEAP" -XX:+UseSerialGC -Djava.io.tmpdir="$STATE/tmp" \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
        -Dquarkus.http.access-log.enabled=false \
        -jar "$HOME_DIR/quarkus-run.jar" >"$STATE/registry.log" 2>&1 &
      echo $! >"$PIDFILE")
  fi
  local deadline=$((SECONDS + ${REGISTRY_START_TIMEOUT:-120}))
  until ready; do
    pid_alive "$PIDFILE" || { tail -40 "$STATE/registry.log" >&2; die "Apicurio Registry exited during startup"; }
    [ $SECONDS -lt $deadline ] || { tail -40 "$STATE/registry.log" >&2; die "Apicurio Registry not ready"; }
    sleep 1
  done
  log "Apicurio Registry is up: Confluent-compatible API at $URL (pid $(cat "$PIDFILE"))"
}

status() {
  if pid_alive "$PIDFILE" && ready; then
    echo "registry: running (pid $(cat "$PIDFILE")) at $URL"
  else
    echo "registry: stopped"; return 1
  fi
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) stop_pid "$PIDFILE" "Apicurio Registry" ;;
  status) status ;;
  reset) stop_pid "$PIDFILE" "Apicurio Registry"; rm -rf "$STATE" ;;
  *) echo "usage: $0 install|up|down|status|reset" >&2; exit 2 ;;
esac
