#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and benchmarks: its own data folder, its own port on
# 127.0.0.1, run as the non-root `postgres` user (PostgreSQL refuses root), nothing system-wide
# touched (no pg_ctlcluster, no Debian service).
#
#   bash Scripts/postgres.sh start DIR     # installs PostgreSQL when missing; prints the journal URL
#   bash Scripts/postgres.sh stop DIR      # fast shutdown, then removes DIR
#   bash Scripts/postgres.sh restart DIR   # fast shutdown and start again, same port and data
#
# DURABLE_PG_FSYNC=off turns fsync off (tests only; benchmarks keep it on).
set -euo pipefail

command_name="${1:-}"
dir="${2:-}"
[ -n "$command_name" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|restart DIR" >&2; exit 2; }

bin_dir() {
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  if [ -z "$found" ] || [ ! -x "$found/initdb" ]; then
    echo "installing postgresql" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    found="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  fi
  echo "$found"
}

# Runs a command as the cluster's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local bin port
  bin="$(bin_dir)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ "$(id -u)" -eq 0 ] && { id postgres >/dev/null 2>&1 || as_owner true; chown postgres "$dir"; }
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U durable --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  port="$(cat "$dir/port" 2>/dev/null || free_port)"
  echo "$port" >"$dir/port"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -o "-p $port -k $dir -c listen_addresses=127.0.0.1 \
    -c max_connections=300 -c shared_buffers=128MB -c fsync=${DURABLE_PG_FSYNC:-on}" start >/dev/null \
    || { tail -20 "$dir/log" >&2; exit 1; }
  as_owner "$bin/psql" -h "$dir" -p "$port" -U durable -d postgres -qtAc \
    "SELECT 1 FROM pg_database WHERE datname = 'durable'" | grep -q 1 \
    || as_owner "$bin/createdb" -h "$dir" -p "$port" -U durable durable
  echo "postgres://durable@127.0.0.1:$port/durable"
}

stop() {
  local bin
  [ -d "$dir/data" ] || { rm -rf "$dir"; return 0; }
  bin="$(bin_dir)"
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  [ "$command_name" = stop ] && rm -rf "$dir"
  return 0
}

case "$command_name" in
  start) start ;;
  stop) stop ;;
  restart) stop; sleep "${DURABLE_PG_DOWN_SECONDS:-0}"; start >/dev/null ;;
  *) echo "usage: $0 start|stop|restart DIR" >&2; exit 2 ;;
esac
