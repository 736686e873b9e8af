#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for one test run (a CTest fixture) or for `make run`.
#   pg_ctl.sh start STATE_DIR   initdb into a temp dir, start on a free port, write STATE_DIR/env
#   pg_ctl.sh stop  STATE_DIR   stop it and remove its files
#   pg_ctl.sh down  STATE_DIR   stop the server (fast shutdown), keep its files (fault tests)
#   pg_ctl.sh up    STATE_DIR   start a stopped cluster again on the same port and socket dir
# STATE_DIR/env holds PGHOST (a short Unix-socket dir), PGPORT, PGUSER, PGDATABASE and DSN.
# As root, initdb and postgres run as the `postgres` user (initdb refuses root).
set -euo pipefail

cmd=${1:?usage: pg_ctl.sh start|stop|down|up STATE_DIR}
state=${2:?usage: pg_ctl.sh start|stop STATE_DIR}
bindir=${PG_BINDIR:-$(pg_config --bindir 2>/dev/null || true)}
[[ -x "$bindir/initdb" ]] || bindir=/usr/lib/postgresql/15/bin

as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# run_server DATA_DIR PORT SOCKET_DIR: start postgres and wait until it accepts connections.
run_server() {
  if ! as_pg "$bindir/pg_ctl" -D "$1" -w -t 30 -l "$3/postgres.log" \
      -o "-p $2 -k $3 -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200" \
      start >/dev/null; then
    echo "pg_ctl.sh: postgres failed to start; its log:" >&2; cat "$3/postgres.log" >&2; exit 1
  fi
}

stop_cluster() {
  [[ -f "$state/env" ]] || return 0
  # shellcheck disable=SC1091
  source "$state/env"
  as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PGDATA_ROOT" "$PGHOST"
  rm -f "$state/env"
}

case "$cmd" in
  start)
    mkdir -p "$state"
    stop_cluster
    data=$(mktemp -d /tmp/dpgdata.XXXXXX)
    sock=$(mktemp -d /tmp/dpg.XXXXXX)
    chmod 755 "$data" "$sock"
    [[ $(id -u) -eq 0 ]] && chown postgres: "$data" "$sock"
    port=$(free_port)
    if ! as_pg "$bindir/initdb" -D "$data/pg" -U postgres -A trust -E UTF8 --no-sync >"$sock/initdb.log" 2>&1; then
      echo "pg_ctl.sh: initdb failed:" >&2; cat "$sock/initdb.log" >&2; exit 1
    fi
    run_server "$data/pg" "$port" "$sock"
    cat >"$state/env" <<EOT
PGDATA_ROOT=$data
PGDATA_DIR=$data/pg
PGHOST=$sock
PGPORT=$port
PGUSER=postgres
PGDATABASE=postgres
DSN="host=$sock port=$port user=postgres dbname=postgres"
EOT
    echo "pg_ctl.sh: postgres running on port $port, socket dir $sock"
    ;;
  stop)
    stop_cluster
    ;;
  down)
    # shellcheck disable=SC1091
    source "$state/env"
    as_pg "$bindir/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null
    ;;
  up)
    # shellcheck disable=SC1091
    source "$state/env"
    run_server "$PGDATA_DIR" "$PGPORT" "$PGHOST"
    ;;
  *)
    echo "usage: pg_ctl.sh start|stop|down|up STATE_DIR" >&2; exit 2 ;;
esac
