#!/usr/bin/env bash
# `make demo`: two dispatcherd nodes on the same pg_notify channels, a mix of tasks published
# with `dispatcherctl submit` (and one with plain SQL), then `running` and `workers` answered
# by both nodes. Like upstream's demo, with a throwaway Postgres instead of docker-compose:
# unless DISPATCHERD_PG_CONNINFO names a database, a PostgreSQL 15 cluster is started on
# localhost:55777 (data in .pgdata/, shared with `make run`) and stopped again at the end.
#
# Node A runs dispatcher.yml as it is; node B a generated copy with node_id demo-server-b.
# Both LISTEN on the same channels, so both run every task: pg_notify is a broadcast.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
dispatcherd=$build/dispatcherd/dispatcherd
ctl=$build/dispatcherctl/dispatcherctl
[[ -x $dispatcherd && -x $ctl ]] || { echo "demo: no binaries in $build/, run 'make' first" >&2; exit 1; }

port=55777
bindir=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
[[ -x "$bindir/initdb" ]] || bindir=/usr/lib/postgresql/15/bin
work=$PWD/.demo
mkdir -p "$work"

as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
say() { printf '\n== %s\n' "$*"; }

# Everything started here is stopped on any exit (success, error, Ctrl-C): nodes first,
# gracefully (SIGTERM lets running tasks finish or cancels them, then each node exits 0).
pids=()
started_db=0
data=$PWD/.pgdata/data
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    say "stopping both nodes (SIGTERM)"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
      local status=0
      wait "$pid" || status=$?
      echo "node pid $pid exited with status $status"
    done
  fi
  if [[ $started_db -eq 1 ]]; then
    as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    echo "stopped the throwaway Postgres"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Postgres (the same throwaway cluster as scripts/run-local.sh) ---
conninfo=${DISPATCHERD_PG_CONNINFO:-}
if [[ -z "$conninfo" ]]; then
  sock=$PWD/.pgdata/run
  mkdir -p .pgdata "$sock"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: .pgdata "$sock"; fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    echo "demo: creating a throwaway Postgres cluster in .pgdata/"
    as_pg "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
  fi
  if ! as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$data" -w -t 30 -l "$PWD/.pgdata/postgres.log" \
      -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
      { echo "demo: Postgres failed to start:" >&2; tail -n 20 .pgdata/postgres.log >&2; exit 1; }
    started_db=1
  fi
  echo "demo: Postgres on localhost:$port"
fi

# --- configs: node B is dispatcher.yml with another node_id (and socket path, if any). The
# dispatcherctl calls use node B's file: any node's file names the same channels. Both the
# service and dispatcherctl take DISPATCHERD_PG_CONNINFO over the file's conninfo.
edits=(-e 's/node_id: .*/node_id: demo-server-b/' -e "s#socket_path: .*#socket_path: $work/node-b.sock#")
sed "${edits[@]}" dispatcher.yml >"$work/node-b.yml"
client=(--config "$work/node-b.yml")

# --- the two nodes ---
start_node() {  # name config
  "$dispatcherd" --config "$2" --log-level INFO >"$work/$1.log" 2>&1 &
  pids+=($!)
}
start_node node-a dispatcher.yml
start_node node-b "$work/node-b.yml"
for name in node-a node-b; do
  # Publishing before the LISTEN is up would lose the messages (pg_notify keeps nothing).
  for _ in $(seq 1 100); do
    grep -q "pg_notify connection established" "$work/$name.log" && break
    sleep 0.1
  done
  grep -q "pg_notify connection established" "$work/$name.log" ||
    { echo "demo: $name did not connect:" >&2; tail -n 20 "$work/$name.log" >&2; exit 1; }
done
say "two nodes listening: demo-server-a (pid ${pids[0]}), demo-server-b (pid ${pids[1]})"

# --- a mix of tasks ---
submit() {
  local shown="\$ dispatcherctl submit" a
  for a in "$@"; do [[ $a =~ ^[A-Za-z0-9._=-]+$ ]] && shown+=" $a" || shown+=" '$a'"; done
  echo "$shown"
  "$ctl" submit "$@" "${client[@]}"
}
say "publishing tasks"
submit dispatcherd.builtin.sleep --args '[4]' --count 3 --uuid demo-sleep
submit dispatcherd.builtin.echo --args '["hello"]' --kwargs '{"from": "the demo"}' --count 2
submit dispatcherd.builtin.fail --kwargs '{"message": "this task fails on purpose"}' --uuid demo-fail
submit dispatcherd.builtin.sleep --args '[1]' --delay 2 --uuid demo-delayed
# Three equal messages with queue_one: one runs, one waits behind it, the third is dropped.
submit dispatcherd.builtin.sleep --args '[3]' --on-duplicate queue_one --count 3 --uuid demo-q1
if [[ -z "$conninfo" && -x "$bindir/psql" ]]; then
  echo "\$ psql -c \"SELECT pg_notify('test_channel', ...)\""
  "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt -c \
    "SELECT pg_notify('test_channel', '{\"task\": \"dispatcherd.builtin.sleep\", \"uuid\": \"demo-sql\", \"args\": [4]}')" >/dev/null
  echo "published demo-sql with plain SQL"
fi

sleep 1  # let the nodes hand the tasks to workers (the delayed one is still held)
say "dispatcherctl running --expected-replies 2"
"$ctl" running --expected-replies 2 "${client[@]}"
say "dispatcherctl workers --expected-replies 2"
"$ctl" workers --expected-replies 2 "${client[@]}"

sleep 4  # the delayed task has run by now, and the failure is logged
say "the failing task, as each node logged it"
grep -h "\[main .*uuid=demo-fail" "$work"/node-*.log || true
say "dispatcherctl main --expected-replies 2 (counters)"
"$ctl" main --expected-replies 2 "${client[@]}"
echo "(full logs: $work/node-a.log, $work/node-b.log)"
