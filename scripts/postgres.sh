#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and the HA demo/benchmarks.
#   scripts/postgres.sh start DIR   initdb DIR (if new), start it on a free
#                                   port; prints its URL as the last line
#   scripts/postgres.sh stop DIR    stop it (fast shutdown)
#   scripts/postgres.sh url DIR     the URL of a running one
# initdb refuses root, so as root the server runs as the `postgres` user
# (created if missing). fsync is off: nothing here outlives the run.
# Needs PostgreSQL's initdb/pg_ctl (Debian: postgresql); installs it with
# apt when missing.
set -euo pipefail

usage() { echo "usage: $0 start|stop|url DIR" >&2; exit 64; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

find_bin() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local b
  b=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$b" ] && echo "$b"
}

ensure_installed() {
  if [ -z "$(find_bin initdb)" ]; then
    echo "postgres.sh: installing PostgreSQL with apt" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
  fi
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "$cmd" in
  start)
    ensure_installed
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
      chown postgres "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$(find_bin initdb)" -D "$dir/data" -A trust -U postgres --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # A restart keeps its port: the URLs handed out stay true.
    if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=$(free_port); fi
    echo "$port" >"$dir/port"
    # Many replicas and test processes share one server: room for their pools.
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off \
          -c synchronous_commit=off -c full_page_writes=off -c max_connections=1000" \
      start >&2 || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres" >"$dir/url"
    cat "$dir/url"
    ;;
  stop)
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -m fast -w stop >&2
    ;;
  url)
    cat "$dir/url"
    ;;
  *) usage ;;
esac
