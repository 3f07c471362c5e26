#!/usr/bin/env bash
# Elasticsearch 8.x (single node, no security) from Maven Central: install | up | down | status | reset.
# Uses the integ-test-zip distribution: server + transport + x-pack core/security, no bundled JDK,
# no painless/reindex/ingest/analysis-common/data streams modules (script updates answer 400
# "script_lang not supported [painless]", _delete_by_query 400 "no handler"), and no rest-root
# module: GET / and HEAD / answer 405, so client.info()/ping() fail; probe _cluster/health instead.
# Indices get 1 replica by default, so health stays yellow (never green) unless replicas are 0.
# Env: ES_VERSION (default 8.19.21), ES_PORT (9200), ES_TRANSPORT_PORT (ES_PORT+100),
#      ES_USER (cdcrouter; Elasticsearch refuses to run as root), ES_JAVA_HOME (Java 17),
#      ES_HEAP (512m).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ES_VERSION="${ES_VERSION:-8.19.21}"
ES_PORT="${ES_PORT:-9200}"
ES_TRANSPORT_PORT="${ES_TRANSPORT_PORT:-$((ES_PORT + 100))}"
ES_USER="${ES_USER:-cdcrouter}"
ES_JAVA_HOME="${ES_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}"
ES_HEAP="${ES_HEAP:-512m}"
ES_HOME="$CACHE/elasticsearch-$ES_VERSION"
STATE="$RUN/elasticsearch-$ES_PORT"
PIDFILE="$STATE/elasticsearch.pid"
HEALTH_URL="http://127.0.0.1:$ES_PORT/_cluster/health"

install() {
  if [ -f "$ES_HOME/.complete" ]; then return 0; fi
  command -v unzip >/dev/null || die "unzip is required (apt-get install unzip)"
  log "installing Elasticsearch $ES_VERSION from Maven Central into $ES_HOME"
  local dl="$CACHE/elasticsearch-$ES_VERSION-download"
  rm -rf "$dl" "$ES_HOME"
  maven_copy_deps "$dl" "org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"
  local zip; zip="$(ls "$dl"/elasticsearch-*.zip)"
  unzip -q "$zip" -d "$CACHE/elasticsearch-$ES_VERSION-unpack"
  mv "$CACHE/elasticsearch-$ES_VERSION-unpack/elasticsearch-$ES_VERSION" "$ES_HOME"
  rm -rf "$CACHE/elasticsearch-$ES_VERSION-unpack" "$dl"
  # The cache stays root-owned: the server only reads it (config, data, logs, tmp are under $STATE).
  chmod -R a+rX "$ES_HOME"
  touch "$ES_HOME/.complete"
}

ensure_user() {
  id -u "$ES_USER" >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || die "user $ES_USER missing and not root: create it or set ES_USER"
  log "creating system user $ES_USER"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER"
}

as_es() { if [ "$(id -u)" = 0 ]; then runuser -u "$ES_USER" -- "$@"; else "$@"; fi; }

# The server user must be able to traverse every parent of ES_HOME and STATE. Add o+x (search only,
# no listing) to the parents that lack it, nothing more.
ensure_traversable() {
  local target dir
  for target in "$ES_HOME" "$STATE"; do
    dir="$target"
    while [ "$dir" != / ]; do
      dir="$(dirname "$dir")"
      if ! as_es test -x "$dir"; then
        log "chmod o+x $dir (so $ES_USER can reach $target)"
        chmod o+x "$dir"
      fi
    done
  done
}

write_config() {
  local conf="$STATE/config"
  # ES_TMPDIR (also the launcher's java.io.tmpdir, which leaves final-flags* dirs): fresh per start.
  rm -rf "$STATE/tmp"
  mkdir -p "$STATE/data" "$STATE/logs" "$STATE/tmp" "$conf"
  # Copy the distribution's config once (the keystore the server creates there is kept).
  cp -rn "$ES_HOME/config/." "$conf/"
  local ml=""
  [ -d "$ES_HOME/modules/x-pack-ml" ] && ml="xpack.ml.enabled: false"
  cat >"$conf/elasticsearch.yml" <<YML
# Written by scripts/elasticsearch.sh on every start; edit the script, not this file.
cluster.name: cdc-router-test
node.name: es-$ES_PORT
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $STATE/data
path.logs: $STATE/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
# Tests delete indices by pattern.
action.destructive_requires_name: false
$ml
YML
  # The server's working directory is path.logs, so the stock gc.log / hs_err paths land there;
  # only shrink the gc log rotation (stock: 32 x 64 MB).
  sed -e 's/filecount=32,filesize=64m/filecount=2,filesize=8m/' \
      "$ES_HOME/config/jvm.options" >"$conf/jvm.options"
  # Read after jvm.options and ES's own defaults, so these override them. Pre-touching the heap
  # (ES default) makes the whole heap resident at once; a test server does not need it.
  cat >"$conf/jvm.options.d/cdc-router.options" <<OPTS
-XX:-AlwaysPreTouch
-XX:HeapDumpPath=$STATE/logs
OPTS
  chown -R "$ES_USER:" "$STATE"
}

healthy() {
  curl -fsS --max-time 2 "$HEALTH_URL" 2>/dev/null | grep -Eq '"status":"(green|yellow)"'
}

log_tail() {
  for f in "$STATE/startup.log" "$STATE/logs/cdc-router-test.log"; do
    [ -s "$f" ] && { echo "--- tail of $f" >&2; tail -40 "$f" >&2; }
  done
  return 0
}

up() {
  install
  ensure_user
  if pid_alive "$PIDFILE" && healthy; then
    log "Elasticsearch already running on 127.0.0.1:$ES_PORT (pid $(cat "$PIDFILE"))"; return 0
  fi
  if pid_alive "$PIDFILE"; then
    log "Elasticsearch pid $(cat "$PIDFILE") alive but not healthy: waiting for it"
  else
    port_open "$ES_PORT" && die "port $ES_PORT is taken by another process"
    port_open "$ES_TRANSPORT_PORT" && die "transport port $ES_TRANSPORT_PORT is taken by another process"
    [ -x "$ES_JAVA_HOME/bin/java" ] || die "no java at ES_JAVA_HOME=$ES_JAVA_HOME"
    rm -f "$PIDFILE"
    write_config
    ensure_traversable
    log "starting Elasticsearch $ES_VERSION on 127.0.0.1:$ES_PORT (transport $ES_TRANSPORT_PORT)"
    # -d: the launcher daemonizes the server and exits once it has started; -p: server JVM pid.
    # cd into STATE so nothing is written relative to a root-owned working directory.
    (cd "$STATE" && nohup runuser -u "$ES_USER" -- env -u JAVA_HOME -u JAVA_TOOL_OPTIONS \
      HOME="$STATE" CLI_JAVA_OPTS="-Djava.io.tmpdir=$STATE/tmp" ES_JAVA_HOME="$ES_JAVA_HOME" ES_PATH_CONF="$STATE/config" \
      ES_TMPDIR="$STATE/tmp" ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP ${ES_EXTRA_JAVA_OPTS:-}" \
      "$ES_HOME/bin/elasticsearch" -d -p "$PIDFILE" >"$STATE/startup.log" 2>&1 &
      echo $! >"$STATE/launcher.pid")
  fi
  local deadline=$((SECONDS + ${ES_START_TIMEOUT:-120})) launcher
  launcher="$(cat "$STATE/launcher.pid" 2>/dev/null || true)"
  until healthy; do
    if [ $SECONDS -ge $deadline ]; then
      log_tail; die "Elasticsearch not healthy after ${ES_START_TIMEOUT:-120}s"
    fi
    # The launcher exiting before a pid file exists means the server failed to start.
    if [ -n "$launcher" ] && ! kill -0 "$launcher" 2>/dev/null && ! pid_alive "$PIDFILE"; then
      log_tail; die "Elasticsearch failed to start"
    fi
    sleep 0.5
  done
  log "Elasticsearch is up on http://127.0.0.1:$ES_PORT (pid $(cat "$PIDFILE"))"
}

status() {
  if pid_alive "$PIDFILE" && healthy; then
    echo "elasticsearch: running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$ES_PORT"
  else
    echo "elasticsearch: stopped"; return 1
  fi
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) stop_pid "$PIDFILE" Elasticsearch ;;
  status) status ;;
  reset) stop_pid "$PIDFILE" Elasticsearch; rm -rf "$STATE" ;;
  *) echo "usage: $0 install|up|down|status|reset" >&2; exit 2 ;;
esac
