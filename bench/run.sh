#!/usr/bin/env bash
# `make bench`: starts its own Postgres and dispatcherd, runs bursts of no-op tasks and prints
# a table of medians (with min and max) next to the transport ceiling measured in the same
# run. Writes the raw figures to bench/results/latest.json. Not part of `make test`.
#   BENCH_RUNS=3 BENCH_COUNT=20000 BENCH_WORKERS="1 2 4" make bench
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${BENCH_RUNS:-3}
count=${BENCH_COUNT:-20000}
worker_counts=${BENCH_WORKERS:-"1 2 4"}
state=$(mktemp -d /tmp/dbench.XXXXXX)
mkdir -p bench/results
svc_pid=""
cleanup() {
  [[ -n "$svc_pid" ]] && kill "$svc_pid" 2>/dev/null && wait "$svc_pid" 2>/dev/null || true
  tests/support/pg_ctl.sh stop "$state" >/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT

tests/support/pg_ctl.sh start "$state" >/dev/null
# shellcheck disable=SC1091
source "$state/env"
chmod 777 "$state"

results="[]"
for w in $worker_counts; do
  cat >"$state/bench.yml" <<EOT
version: 2
service:
  pool_kwargs: {min_workers: $w, max_workers: $w}
  main_kwargs: {node_id: bench}
brokers:
  pg_notify:
    config: {conninfo: "$DSN application_name=dispatcherd_bench"}
    channels: [bench]
    default_publish_channel: bench
    max_connection_idle_seconds: null
extensions:
  max_queued_tasks: 10000000
EOT
  "$build/dispatcherd/dispatcherd" --config "$state/bench.yml" --log-level WARNING >"$state/service.log" 2>&1 &
  svc_pid=$!
  sleep 1
  for r in $(seq 1 "$runs"); do
    line=$("$build/bench/bench_throughput" --dsn "$DSN" --channel bench --pid "$svc_pid" --count "$count" --batch 100)
    results=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); x=json.loads(sys.argv[2]); x["workers"]=int(sys.argv[3]); r.append(x); print(json.dumps(r))' "$results" "$line" "$w")
  done
  kill "$svc_pid"; wait "$svc_pid" 2>/dev/null || true; svc_pid=""
done

echo "$results" >bench/results/latest.json
python3 - "$results" "$count" <<'PY'
import json, statistics, sys
rows = json.loads(sys.argv[1]); count = sys.argv[2]
print(f"no-op burst of {count} tasks, published 100 per statement (median [min..max] of {len(rows)//len({r['workers'] for r in rows})} runs)")
print(f"{'workers':>7} {'tasks/s':>22} {'ceiling/s':>10} {'of ceiling':>10} {'main µs/task':>13} {'worker µs/task':>15}")
for w in sorted({r["workers"] for r in rows}):
    rs = [r for r in rows if r["workers"] == w]
    def m(k): v=[r[k] for r in rs]; return statistics.median(v), min(v), max(v)
    t = m("tasks_per_s"); c = m("ceiling_per_s"); f = m("fraction_of_ceiling"); mc = m("main_cpu_us_per_task"); wc = m("worker_cpu_us_per_task")
    print(f"{w:>7} {t[0]:>9.0f} [{t[1]:.0f}..{t[2]:.0f}] {c[0]:>10.0f} {f[0]:>9.0%} {mc[0]:>13.1f} {wc[0]:>15.1f}")
PY
