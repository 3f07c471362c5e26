#!/usr/bin/env bash
# InfluxDB 1.x (the Debian package `influxdb`, 1.6.7 on Debian 12) as a private server: install | up | down | status | reset.
# Its own config, data, WAL and meta dirs under $RUN/influxdb-$INFLUX_PORT, loopback only, HTTP API
# only, no usage reporting, no _internal monitor database. The package's systemd unit is not used
# (nor started: nothing here talks to systemd).
# Env: INFLUX_PORT (HTTP, 18086), INFLUX_RPC_PORT (backup/restore RPC, INFLUX_PORT+2), INFLUXD (path of influxd).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INFLUX_PORT="${INFLUX_PORT:-18086}"
INFLUX_RPC_PORT="${INFLUX_RPC_PORT:-$((INFLUX_PORT + 2))}"
STATE="$RUN/influxdb-$INFLUX_PORT"
PIDFILE="$STATE/influxd.pid"
PING_URL="http://127.0.0.1:$INFLUX_PORT/ping"

influxd_bin() { command -v "${INFLUXD:-influxd}" 2>/dev/null || true; }

install() {
  [ -n "$(influxd_bin)" ] && return 0
  [ "$(id -u)" = 0 ] || die "influxd missing and not root: apt-get install influxdb (as root)"
  log "installing the Debian package influxdb"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends influxdb >&2 || {
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends influxdb >&2
  }
  [ -n "$(influxd_bin)" ] || die "apt-get installed influxdb but influxd is not on the PATH"
}

write_config() {
  mkdir -p "$STATE/meta" "$STATE/data" "$STATE/wal"
  cat >"$STATE/influxdb.conf" <<CONF
# Written by scripts/influxdb.sh on every start; edit the script, not this file.
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"

[meta]
  dir = "$STATE/meta"

[data]
  dir = "$STATE/data"
  wal-dir = "$STATE/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
  pprof-enabled = false

[continuous_queries]
  enabled = false
CONF
}

healthy() { curl -fsS --max-time 2 -o /dev/null "$PING_URL" 2>/dev/null; }

up() {
  install
  if pid_alive "$PIDFILE" && healthy; then
    log "InfluxDB already running on 127.0.0.1:$INFLUX_PORT (pid $(cat "$PIDFILE"))"; return 0
  fi
  if ! pid_alive "$PIDFILE"; then
    port_open "$INFLUX_PORT" && die "port $INFLUX_PORT is taken by another process"
    port_open "$INFLUX_RPC_PORT" && die "RPC port $INFLUX_RPC_PORT is taken by another process"
    write_config
    log "starting InfluxDB on 127.0.0.1:$INFLUX_PORT (RPC 127.0.0.1:$INFLUX_RPC_PORT)"
    # exec: the background job's pid is influxd's own.
    (cd "$STATE" && exec nohup "$(influxd_bin)" -config "$STATE/influxdb.conf" -pidfile "$PIDFILE" \
      >"$STATE/influxd.log" 2>&1) &
    echo $! >"$STATE/launcher.pid"
  fi
  local deadline=$((SECONDS + ${INFLUX_START_TIMEOUT:-60})) launcher
  launcher="$(cat "$STATE/launcher.pid" 2>/dev/null || true)"
  until healthy; do
    if [ $SECONDS -ge $deadline ] || { [ -n "$launcher" ] && ! kill -0 "$launcher" 2>/dev/null; }; then
      tail -30 "$STATE/influxd.log" >&2 || true
      die "InfluxDB did not come up on 127.0.0.1:$INFLUX_PORT"
    fi
    sleep 0.3
  done
  # -pidfile is written by influxd itself; fall back to the launcher's pid (the same process).
  [ -s "$PIDFILE" ] || echo "$launcher" >"$PIDFILE"
  log "InfluxDB is up on http://127.0.0.1:$INFLUX_PORT (pid $(cat "$PIDFILE"))"
}

status() {
  if pid_alive "$PIDFILE" && healthy; then
    echo "influxdb: running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$INFLUX_PORT"
  else
    echo "influxdb: stopped"; return 1
  fi
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) stop_pid "$PIDFILE" InfluxDB ;;
  status) status ;;
  reset) stop_pid "$PIDFILE" InfluxDB; rm -rf "$STATE" ;;
  *) echo "usage: $0 install|up|down|status|reset" >&2; exit 2 ;;
esac
