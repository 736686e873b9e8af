#!/usr/bin/env bash
# `make bench` (bench/run.sh [BUILD_DIR], default build): starts its own Postgres and
# dispatcherd (log level WARNING), measures the figures of DESIGN section 10, prints a table of
# medians [min..max] next to the targets and writes every raw figure to
# bench/results/latest.json. Not part of `make test`. Needs the targets dispatcherd,
# dispatcherctl and bench_tools built in BUILD_DIR, and python3-psycopg. About 10 minutes on a
# 2-core machine with the defaults; Postgres and the services are stopped on exit and Ctrl-C.
# bench/bench.py runs the sections (bench/harness.py: Postgres, service, /proc, /metrics;
# bench/report.py: the table) with the C++ tools next to it (bench/CMakeLists.txt).
#
# Variables (environment), with their defaults:
#   BENCH_RUNS=3                 runs per figure (each figure: median [min..max])
#   BENCH_SECTIONS="throughput latency memory startup ctl scaling growth"   which to run
#   BENCH_COUNTS="20000 100000"  burst sizes of the throughput section
#   BENCH_WORKERS="1 2 4 8"      pool sizes of the throughput section
#   BENCH_METHODS="batch single" publishers: 100 pg_notify per statement / one per statement
#   BENCH_SINGLE_CEILING_MAX=20000   tasks in the one-statement-per-task ceiling run
#   BENCH_RATES="1000 5000"      publish rates (tasks/s) of the latency section
#   BENCH_LATENCY_SECONDS=5      seconds of publishing per latency run
#   BENCH_BACKLOG=1000000        queued tasks for the bytes-per-queued-task figure
#   BENCH_STARTS=10              service starts for exec → first on-start task
#   BENCH_CTL_RUNS=20            dispatcherctl runs per transport
#   BENCH_GROWTH=1               0 skips the growth section
#   BENCH_GROWTH_RUNS=1          runs per growth figure
#   BENCH_GROWTH_COUNT=20000     tasks per growth burst (fewer for big payloads: ≤ 100 MB)
#   BENCH_GROWTH_WORKERS="1 2 4 8 12 16"
#   BENCH_GROWTH_PAYLOADS="200 1000 7000 20000 100000"   bytes per message
#   BENCH_GROWTH_BACKLOGS="1000 10000 100000 1000000"    (the 1M one reuses BENCH_BACKLOG's)
#   BENCH_OUT=bench/results/latest.json
# Example: BENCH_RUNS=1 BENCH_GROWTH=0 BENCH_SECTIONS="throughput latency" make bench
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian's python3 has psycopg 3 (python3-psycopg); a pyenv python3 first in PATH may not.
exec /usr/bin/python3 bench/bench.py "${1:-build}"
