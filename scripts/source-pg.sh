#!/usr/bin/env bash
# Private PostgreSQL 15 cluster used as the CDC *source* (Debezium reads its WAL through pgoutput):
#   up | down | status | reset | psql [psql args...]
# Uses the machine's binaries; never touches the shared PostgreSQL on 5432. Data, logs and the unix
# socket live under $RUN/source-pg-$PORT, owned by the postgres user (initdb refuses to run as root).
# `up` creates the database `shop` (empty; apply scripts/sql/shop.sql for the example schema):
#   bash scripts/source-pg.sh up && bash scripts/source-pg.sh psql -f scripts/sql/shop.sql
# `psql` runs psql against that database as user postgres over 127.0.0.1 (trust auth), e.g.
#   bash scripts/source-pg.sh psql -c 'select * from customers'
# Env: SOURCE_PG_PORT (5433), SOURCE_PG_DB (shop), PG_BIN (/usr/lib/postgresql/15/bin),
#      SOURCE_PG_USER (OS user that runs the server when we are root: postgres).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
SOURCE_PG_PORT="${SOURCE_PG_PORT:-5433}"
SOURCE_PG_DB="${SOURCE_PG_DB:-shop}"
SOURCE_PG_USER="${SOURCE_PG_USER:-postgres}"
STATE="$RUN/source-pg-$SOURCE_PG_PORT"
DATA="$STATE/data"
PGLOG="$STATE/postgres.log"
# Unix sockets are limited to ~107 bytes: fall back to /tmp when the state path is too long.
SOCK="$STATE/sock"
[ ${#SOCK} -lt 80 ] || SOCK="/tmp/cdc-source-pg-$SOURCE_PG_PORT"

[ "$SOURCE_PG_PORT" != 5432 ] || die "port 5432 belongs to the machine's shared PostgreSQL"

as_pg() {
  if [ "$(id -u)" = 0 ]; then (cd "$STATE" && runuser -u "$SOURCE_PG_USER" -- "$@"); else "$@"; fi
}

# Client commands: TCP on loopback, superuser postgres, trust auth; ignore any PG* in the env.
pg_client() {
  local tool="$1"; shift
  env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD -u PGSERVICE \
    "$PG_BIN/$tool" -h 127.0.0.1 -p "$SOURCE_PG_PORT" -U postgres "$@"
}

# The server user must reach STATE: add o+x (search only) to parents that lack it.
ensure_traversable() {
  [ "$(id -u)" = 0 ] || return 0
  local dir="$STATE"
  while [ "$dir" != / ]; do
    dir="$(dirname "$dir")"
    if ! runuser -u "$SOURCE_PG_USER" -- test -x "$dir"; then
      log "chmod o+x $dir (so $SOURCE_PG_USER can reach $STATE)"
      chmod o+x "$dir"
    fi
  done
}

init_cluster() {
  [ -x "$PG_BIN/initdb" ] || die "no PostgreSQL binaries at PG_BIN=$PG_BIN"
  mkdir -p "$STATE" "$SOCK"
  if [ "$(id -u)" = 0 ]; then
    id -u "$SOURCE_PG_USER" >/dev/null 2>&1 || die "user $SOURCE_PG_USER missing (apt-get install postgresql)"
    chown "$SOURCE_PG_USER:" "$STATE" "$SOCK"
  fi
  chmod 700 "$SOCK"
  ensure_traversable
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "initdb $DATA"
    rm -rf "$DATA"
    as_pg "$PG_BIN/initdb" -D "$DATA" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
      >"$STATE/initdb.log" 2>&1 || { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
    echo "include_if_exists = 'cdc-router.conf'" >>"$DATA/postgresql.conf"
  fi
  # Rewritten on every start; edit this script, not the file.
  cat >"$DATA/cdc-router.conf" <<CONF
port = $SOURCE_PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
# A slot whose connector is gone must not fill the disk.
max_slot_wal_keep_size = '2GB'
shared_buffers = '64MB'
max_connections = 50
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_min_messages = warning
CONF
  [ "$(id -u)" = 0 ] && chown "$SOURCE_PG_USER:" "$DATA/cdc-router.conf"
  return 0
}

running() { as_pg "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }
ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$SOURCE_PG_PORT"; }

up() {
  if [ -f "$DATA/PG_VERSION" ] && running && ready; then
    log "source PostgreSQL already running on 127.0.0.1:$SOURCE_PG_PORT"
  else
    port_open "$SOURCE_PG_PORT" && die "port $SOURCE_PG_PORT is taken by another process"
    init_cluster
    log "starting source PostgreSQL on 127.0.0.1:$SOURCE_PG_PORT (data $DATA)"
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$PGLOG" -w -t 60 start >/dev/null \
      || { tail -30 "$PGLOG" >&2; die "source PostgreSQL did not start"; }
    wait_for 30 "source PostgreSQL" ready || die "source PostgreSQL not accepting connections"
  fi
  if [ -z "$(pg_client psql -d postgres -Atqc "select 1 from pg_database where datname = '$SOURCE_PG_DB'")" ]; then
    log "creating database $SOURCE_PG_DB"
    pg_client createdb "$SOURCE_PG_DB"
  fi
}

down() {
  if [ -f "$DATA/PG_VERSION" ] && running; then
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    log "source PostgreSQL stopped"
  else
    log "source PostgreSQL not running"
  fi
}

status() {
  if [ -f "$DATA/PG_VERSION" ] && running && ready; then
    echo "source-pg: running on 127.0.0.1:$SOURCE_PG_PORT (data $DATA)"
  else
    echo "source-pg: stopped"; return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  reset) down; rm -rf "$STATE" "/tmp/cdc-source-pg-$SOURCE_PG_PORT" ;;
  psql) shift; exec env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD -u PGSERVICE \
    "$PG_BIN/psql" -h 127.0.0.1 -p "$SOURCE_PG_PORT" -U postgres -d "$SOURCE_PG_DB" -v ON_ERROR_STOP=1 "$@" ;;
  *) echo "usage: $0 up|down|status|reset|psql [args]" >&2; exit 2 ;;
esac
