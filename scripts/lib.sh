# Shared helpers for the server scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Downloads and unpacked servers live here; git-ignored and reused across runs.
CACHE="${CDC_ROUTER_CACHE:-$ROOT/.cache}"
# Runtime state (data dirs, logs, pid files) of servers started by these scripts.
RUN="${CDC_ROUTER_RUN:-$ROOT/.run}"
mkdir -p "$CACHE" "$RUN"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Fetch Maven artifacts (and their runtime dependencies) into DIR using a throwaway pom.
# args: DIR then "group:artifact:version[:type[:classifier]]"...
maven_copy_deps() {
  local dir="$1"; shift
  local pomdir="$CACHE/pom-$(basename "$dir")"
  mkdir -p "$pomdir" "$dir"
  {
    echo '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
    echo '<groupId>local.cdc-router</groupId><artifactId>deps</artifactId><version>1</version><dependencies>'
    local coord g a v t c
    for coord in "$@"; do
      IFS=: read -r g a v t c <<<"$coord"
      echo "<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version>"
      [ -n "${t:-}" ] && echo "<type>$t</type>"
      [ -n "${c:-}" ] && echo "<classifier>$c</classifier>"
      echo "</dependency>"
    done
    echo '</dependencies></project>'
  } >"$pomdir/pom.xml"
  mvn -q -B -f "$pomdir/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dir" >&2
}

# maven_unpack COORD DEST: one tar.gz artifact from Maven, unpacked into DEST (emptied first).
# dependency:copy fetches the one archive (copy-dependencies would also pull the POM's jars).
maven_unpack() {
  local coord="$1" dest="$2"
  local dl="$dest.download"
  rm -rf "$dl" "$dest"
  mkdir -p "$dl" "$dest"
  mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact="$coord" -DoutputDirectory="$dl" >&2
  tar -xzf "$dl"/*.tar.gz -C "$dest"
  rm -rf "$dl"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for() {
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
  log "$what is up"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE NAME: TERM, wait, then KILL.
stop_pid() {
  local pidfile="$1" name="$2"
  if pid_alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    log "$name stopped"
  else
    log "$name not running"
  fi
  rm -f "$pidfile"
}
