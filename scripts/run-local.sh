#!/usr/bin/env bash
# `make run`: runs dispatcherd in the foreground with dispatcher.yml. Unless
# DISPATCHERD_PG_CONNINFO names a database, starts a throwaway PostgreSQL 15 on
# localhost:55777 (data in .pgdata/, ignored by git) and stops it when dispatcherd exits.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
config=${DISPATCHERD_CONFIG_FILE:-dispatcher.yml}
port=55777
bindir=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
[[ -x "$bindir/initdb" ]] || bindir=/usr/lib/postgresql/15/bin

as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

started_db=0
if [[ -z "${DISPATCHERD_PG_CONNINFO:-}" ]]; then
  data=$PWD/.pgdata/data
  sock=$PWD/.pgdata/run
  mkdir -p .pgdata "$sock"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: .pgdata "$sock"; fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    echo "run-local: creating a throwaway Postgres cluster in .pgdata/" >&2
    as_pg "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
  fi
  if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$data" -w -t 30 -l "$PWD/.pgdata/postgres.log" \
      -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
      { echo "run-local: Postgres failed to start:" >&2; tail -n 20 .pgdata/postgres.log >&2; exit 1; }
    started_db=1
  fi
  echo "run-local: Postgres on localhost:$port (psql -h localhost -p $port -U postgres)" >&2
  stop_db() { [[ $started_db -eq 1 ]] && as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; }
  trap stop_db EXIT
fi

# Not exec: the trap above stops the database after dispatcherd exits (Ctrl-C reaches both,
# and dispatcherd shuts down gracefully on SIGINT).
"$build/dispatcherd/dispatcherd" --config "$config" "${@:2}"
