#!/usr/bin/python3
"""`make bench` (bench/run.sh BUILD_DIR): the performance table of DESIGN section 10.

Starts its own Postgres (tests/support/pg_ctl.sh) and, per section, its own dispatcherd with
the log level fixed at WARNING, measures, prints a table (median [min..max] of BENCH_RUNS runs,
next to the targets) and writes every raw figure to bench/results/latest.json. The settings
are the BENCH_* environment variables listed in bench/run.sh. Postgres and every service are
stopped on exit, on an error and on Ctrl-C.

Sections (BENCH_SECTIONS picks some):
  throughput  no-op bursts end to end, batching and one-statement publishers, vs the ceiling
  latency     publish → start and main's read → task start at fixed rates
  memory      private memory and PSS at idle; bytes per queued task; idle CPU
  startup     exec → first on-start task running
  ctl         `dispatcherctl running` over the socket and over pg_notify, next to the floor
              of a fresh libpq client (bench_pg_roundtrip)
  scaling     24 sleeps of 0.5 s on a pool of 1–12 workers
  growth      tasks/s against workers, payload size and backlog size

harness.py holds Postgres, the service and what is read from /proc and /metrics; report.py
prints the table. The tight parts are C++ tools (target bench_tools): bench_throughput
(a burst and its ceiling, CPU per task), bench_latency (paced publishing, a bare LISTEN
connection, stamps), bench_publish (a backlog), bench_exec_stamp (stamp, then exec), bench_pg_roundtrip (a fresh
libpq client's NOTIFY to itself) and the task
library libbench_tasks.so (bench.stamp records when a task starts; bench.hold keeps a worker
busy until a file exists).
"""
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

sys.dont_write_bytecode = True  # no bench/__pycache__ in the work tree
from harness import (  # noqa: E402
    CHANNEL, ROOT, Postgres, Service, cpu_seconds, histogram, histogram_quantiles, log,
    read_stamps, run_tool, smaps, value, wait_for)
from report import print_table  # noqa: E402

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
SLEEP = "dispatcherd.builtin.sleep"


def env_int(name, default):
    return int(os.environ.get(name, default))


def env_ints(name, default):
    return [int(x) for x in os.environ.get(name, default).replace(",", " ").split()]


RUNS = env_int("BENCH_RUNS", 3)
COUNTS = env_ints("BENCH_COUNTS", "20000 100000")
WORKERS = env_ints("BENCH_WORKERS", "1 2 4 8")
METHODS = os.environ.get("BENCH_METHODS", "batch single").split()
SINGLE_CEILING_MAX = env_int("BENCH_SINGLE_CEILING_MAX", 20000)
RATES = env_ints("BENCH_RATES", "1000 5000")
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "5"))
BACKLOG = env_int("BENCH_BACKLOG", 1000000)
STARTS = env_int("BENCH_STARTS", 10)
CTL_RUNS = env_int("BENCH_CTL_RUNS", 20)
GROWTH = env_int("BENCH_GROWTH", 1)
GROWTH_RUNS = env_int("BENCH_GROWTH_RUNS", 1)
GROWTH_COUNT = env_int("BENCH_GROWTH_COUNT", 20000)
GROWTH_WORKERS = env_ints("BENCH_GROWTH_WORKERS", "1 2 4 8 12 16")
GROWTH_PAYLOADS = env_ints("BENCH_GROWTH_PAYLOADS", "200 1000 7000 20000 100000")
GROWTH_BACKLOGS = env_ints("BENCH_GROWTH_BACKLOGS", "1000 10000 100000 1000000")
SECTIONS = os.environ.get("BENCH_SECTIONS",
                          "throughput latency memory startup ctl scaling growth").split()
if not GROWTH and "growth" in SECTIONS:
    SECTIONS.remove("growth")
OUT = os.environ.get("BENCH_OUT", os.path.join(ROOT, "bench", "results", "latest.json"))
POOL = 4  # workers for the latency, memory, startup, ctl and payload/backlog figures
IDLE_SECONDS = 5

# DESIGN section 10.
TARGETS = {
    "tasks_per_s_batch": "≥ 50,000",
    "cpu_main_us": "≤ 10",
    "cpu_worker_us": "≤ 10",
    "publish_to_start_p50_us_1000": "≤ 300",
    "service_adds_us_1000": "p50 ≤ 50, p99 ≤ 250",
    "main_private_kb": "≤ 3,072 (3 MB)",
    "worker_private_kb": "≤ 512 (0.5 MB)",
    "service_pss_kb": "≤ 15,360 (15 MB)",
    "bytes_per_queued_task": "≤ 400",
    "exec_to_first_task_ms": "≤ 25",
    "ctl_socket_ms": "≤ 10",
    "ctl_pg_notify_ms": "≤ 25",
    "idle_cpu": "~0",
}


def tool(name):
    return os.path.join(BUILD, "bench", name)


# ---------------------------------------------------------------- the sections


class Bench:
    def __init__(self, state, pg):
        self.state, self.pg = state, pg
        self.results = {}
        self.errors = {}
        self.section_seconds = {}
        self.conn = psycopg.connect(pg.dsn, autocommit=True)
        self.build = BUILD
        self.max_queued = max(2 * BACKLOG, 2000000)

    def service(self, workers, **kw):
        return Service(self, workers, **kw).wait_ready()

    def throughput_run(self, svc, method, count, ceiling=None, payload=200, batch=100):
        args = [tool("bench_throughput"), "--dsn", self.pg.dsn, "--channel", CHANNEL, "--pid",
                str(svc.pid), "--count", str(count), "--method", method, "--batch", str(batch),
                "--payload", str(payload), "--stamp-file",
                os.path.join(self.state, "throughput.stamps")]
        if ceiling is not None:
            args += ["--ceiling-count", str(ceiling)]
        return run_tool(args)

    # 1 ------------------------------------------------------------------------------------
    def throughput(self):
        rows = []
        for w in WORKERS:
            with self.service(w, name=f"tp{w}") as svc:
                for method in METHODS:
                    for count in COUNTS:
                        ceiling = min(count, SINGLE_CEILING_MAX) if method == "single" else count
                        for r in range(RUNS):
                            log(f"throughput: {w} workers, {method}, {count} tasks, run {r + 1}")
                            row = self.throughput_run(svc, method, count, ceiling)
                            row.update(workers=w, count=count, run=r + 1)
                            rows.append(row)
        self.results["throughput"] = rows

    # 2 ------------------------------------------------------------------------------------
    def latency(self):
        rows = []
        stamps = os.path.join(self.state, "latency.stamps")
        with self.service(POOL, name="latency") as svc:
            for rate in RATES:
                # Warm-up: every worker opens the stamp file and touches its code once.
                run_tool([tool("bench_latency"), "--dsn", self.pg.dsn, "--channel", CHANNEL,
                          "--stamp-file", stamps, "--rate", str(rate), "--count",
                          str(max(50, rate // 4)), "--tag", f"w{rate}"])
                for r in range(RUNS):
                    log(f"latency: {rate}/s for {LATENCY_SECONDS:g} s, run {r + 1}")
                    h0 = histogram(svc.metrics(), "dispatcherd_task_start_latency_seconds")
                    row = run_tool([tool("bench_latency"), "--dsn", self.pg.dsn, "--channel",
                                    CHANNEL, "--stamp-file", stamps, "--rate", str(rate),
                                    "--count", str(int(rate * LATENCY_SECONDS)), "--tag",
                                    f"r{rate}x{r}"])
                    h1 = histogram(svc.metrics(), "dispatcherd_task_start_latency_seconds")
                    row["service_histogram"] = histogram_quantiles(h0, h1, (0.5, 0.99, 0.999))
                    row.update(workers=POOL, run=r + 1)
                    rows.append(row)
        self.results["latency"] = rows

    # 3 ------------------------------------------------------------------------------------
    def idle_memory(self, svc):
        zyg, workers = svc.processes()
        sample = {"main": smaps(svc.pid), "zygote": [smaps(p) for p in zyg],
                  "workers": [smaps(p) for p in workers]}
        procs = [svc.pid] + zyg + workers
        sample["service_pss_kb"] = sum(smaps(p)["pss_kb"] for p in procs)
        cpu0 = {p: cpu_seconds(p) for p in procs}
        time.sleep(IDLE_SECONDS)
        cpu1 = {p: cpu_seconds(p) for p in procs}
        sample["idle_cpu_ms_per_s"] = {
            "main": (cpu1[svc.pid] - cpu0[svc.pid]) * 1e3 / IDLE_SECONDS,
            "children": sum(cpu1[p] - cpu0[p] for p in procs[1:]) * 1e3 / IDLE_SECONDS}
        return sample

    def occupy_workers(self, svc, n):
        """Keeps n workers busy with bench.hold tasks; returns the function that frees them
        all at one moment (it creates the file they wait for)."""
        until = os.path.join(self.state, f"release-{uuid.uuid4().hex[:8]}")
        for i in range(n):
            self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(
                {"task": "bench.hold", "uuid": f"hold-{i}", "kwargs": {"until": until}})))
        wait_for(lambda: value(svc.metrics(), "dispatcherd_running_tasks") >= n, 20,
                 what="every worker busy")
        return lambda: os.close(os.open(until, os.O_CREAT | os.O_WRONLY, 0o644))

    def backlog_run(self, svc, n, measure_memory=False):
        """Every worker held busy; n tasks published (bench.stamp first and last, no-ops
        between); waits until all are queued; frees the workers; times the drain from the
        first stamp record to the last."""
        stamps = os.path.join(self.state, f"backlog{n}.stamps")
        if os.path.exists(stamps):
            os.unlink(stamps)
        release = self.occupy_workers(svc, POOL)
        row = {"backlog": n, "workers": POOL}
        time.sleep(0.5)
        if measure_memory:
            row["main_before"] = smaps(svc.pid)
        m0 = svc.metrics()
        received0 = value(m0, "dispatcher_messages_received_total")
        t0 = time.monotonic()
        row["publish"] = run_tool([tool("bench_publish"), "--dsn", self.pg.dsn, "--channel",
                                   CHANNEL, "--count", str(n), "--batch", "100", "--payload",
                                   "200", "--stamp-file", stamps, "--tag", f"b{n}"])
        wait_for(lambda: value(svc.metrics(), "dispatcherd_queue_depth") >= n, 600, step=0.05,
                 what=f"{n} queued tasks")
        row["read_seconds"] = time.monotonic() - t0
        m1 = svc.metrics()
        row["received"] = value(m1, "dispatcher_messages_received_total") - received0
        row["queue_overflow"] = value(m1, "dispatcherd_queue_overflow_total")
        if measure_memory:
            time.sleep(0.5)
            row["main_queued"] = smaps(svc.pid)
            grew = row["main_queued"]["private_kb"] - row["main_before"]["private_kb"]
            row["bytes_per_queued_task"] = grew * 1024 / n
        release()
        recs = wait_for(lambda: (lambda r: r if any(u.endswith("-last") for u, *_ in r) else None)(
            read_stamps(stamps)), 600, step=0.05, what="the backlog's last task")
        start = {u.rsplit("-", 1)[1]: s for u, s, *_ in recs}
        row["drain_seconds"] = (start["last"] - start["first"]) / 1e9
        row["drain_tasks_per_s"] = (n - 1) / row["drain_seconds"]
        wait_for(lambda: value(svc.metrics(), "dispatcherd_running_tasks") == 0, 60,
                 what="the backlog's end")
        if measure_memory:
            time.sleep(1)
            row["main_drained"] = smaps(svc.pid)
        return row

    def memory(self):
        idle = []
        for r in range(RUNS):
            log(f"memory: {POOL} workers idle after a 20,000-task burst, run {r + 1}")
            with self.service(POOL, name="memory") as svc:
                time.sleep(0.5)
                fresh = smaps(svc.pid)
                self.throughput_run(svc, "batch", 20000, ceiling=0)
                time.sleep(1)
                idle.append(dict(self.idle_memory(svc), main_fresh=fresh))
        self.results["memory_idle"] = idle
        log(f"memory: {BACKLOG} queued tasks of 200 B")
        with self.service(POOL, name="backlog") as svc:
            self.results["memory_backlog"] = self.backlog_run(svc, BACKLOG, measure_memory=True)

    # 4 ------------------------------------------------------------------------------------
    def startup(self):
        rows = []
        for r in range(STARTS):
            stamps = os.path.join(self.state, "onstart.stamps")
            execf = os.path.join(self.state, "exec.ns")
            for p in (stamps, execf):
                if os.path.exists(p):
                    os.unlink(p)
            svc = Service(self, POOL, on_start=stamps, exec_stamp=execf, name="startup")
            try:
                recs = wait_for(lambda: read_stamps(stamps), 20, step=0.0005,
                                what="the on-start task")
                with open(execf) as f:
                    t_exec = int(f.read())
                rows.append({"run": r + 1, "ms": (recs[0][1] - t_exec) / 1e6})
            finally:
                svc.stop()
        self.results["startup"] = rows

    # 5 ------------------------------------------------------------------------------------
    def ctl(self):
        ctl = os.path.join(BUILD, "dispatcherctl", "dispatcherctl")
        with self.service(POOL, name="ctl") as svc:
            # The socket runs alone: right after a pg_notify run, the exiting Postgres backend
            # still competes for the CPU. The pg_notify runs alternate with their floor, the
            # cost of any client that connects per command: a fresh process loading libpq,
            # connecting and getting its own NOTIFY back.
            groups = [{"socket": [ctl, "running", "--config", svc.config, "--socket",
                                  svc.socket_path]},
                      {"pg_notify": [ctl, "running", "--config", svc.config],
                       "pg_floor": [tool("bench_pg_roundtrip"), self.pg.dsn]}]
            out = {}
            for runs in groups:
                for name in runs:
                    out[name] = []
                for i in range(CTL_RUNS + 1):
                    for name, argv in runs.items():
                        t0 = time.perf_counter()
                        p = subprocess.run(argv, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE)
                        dt = (time.perf_counter() - t0) * 1e3
                        if p.returncode != 0:
                            raise RuntimeError(f"{os.path.basename(argv[0])} ({name}) exited "
                                               f"{p.returncode}: {p.stderr.decode()[-300:]}")
                        if i:  # the first run warms the page cache
                            out[name].append(dt)
        self.results["ctl"] = out

    # 6 ------------------------------------------------------------------------------------
    def scaling(self):
        rows = []
        for r in range(RUNS):
            log(f"scaling: 24 sleeps of 0.5 s on 1-12 workers, run {r + 1}")
            with self.service(1, max_workers=12, name="scaling") as svc:
                time.sleep(0.2)
                base = value(svc.metrics(), "dispatcherd_tasks_finished_total", task=SLEEP)
                msgs = [json.dumps({"task": SLEEP, "uuid": f"s{r}-{i}", "args": [0.5]})
                        for i in range(24)]
                sql = "SELECT " + ", ".join(["pg_notify(%s, %s)"] * 24)
                params = [x for m in msgs for x in (CHANNEL, m)]
                peak = 0
                t0 = time.monotonic()
                self.conn.execute(sql, params)
                while time.monotonic() - t0 < 60:
                    m = svc.metrics()
                    peak = max(peak, value(m, "dispatcherd_workers") -
                               value(m, "dispatcherd_workers", status="retired"))
                    if value(m, "dispatcherd_tasks_finished_total", task=SLEEP) - base >= 24:
                        break
                    time.sleep(0.005)
                rows.append({"run": r + 1, "seconds": time.monotonic() - t0,
                             "peak_workers": peak})
        self.results["scaling"] = rows

    # 7 ------------------------------------------------------------------------------------
    def growth(self):
        g = {"workers": [], "payload": [], "backlog": []}
        self.results["growth"] = g
        for w in GROWTH_WORKERS:
            with self.service(w, name=f"gw{w}") as svc:
                for r in range(GROWTH_RUNS):
                    log(f"growth: {w} workers, run {r + 1}")
                    row = self.throughput_run(svc, "batch", GROWTH_COUNT)
                    row.update(workers=w, run=r + 1)
                    g["workers"].append(row)
        with self.service(POOL, name="gp") as svc:
            for size in GROWTH_PAYLOADS:
                count = max(500, min(GROWTH_COUNT, 100_000_000 // size))
                for r in range(GROWTH_RUNS):
                    log(f"growth: payload {size} B x {count}, run {r + 1}")
                    row = self.throughput_run(svc, "lib", count, payload=size)
                    row.update(workers=POOL, count=count, run=r + 1)
                    g["payload"].append(row)
        reuse = self.results.get("memory_backlog")
        with self.service(POOL, name="gb") as svc:
            for n in GROWTH_BACKLOGS:
                if reuse and reuse.get("backlog") == n and GROWTH_RUNS == 1:
                    g["backlog"].append(dict(reuse, run=1, from_section="memory"))
                    continue
                for r in range(GROWTH_RUNS):
                    log(f"growth: backlog of {n}, run {r + 1}")
                    row = self.backlog_run(svc, n)
                    row["run"] = r + 1
                    g["backlog"].append(row)


# ---------------------------------------------------------------- main


def main():
    t_start = time.monotonic()
    sys.stdout.reconfigure(line_buffering=True)
    for binary in (os.path.join(BUILD, "dispatcherd", "dispatcherd"),
                   os.path.join(BUILD, "dispatcherctl", "dispatcherctl"),
                   tool("bench_throughput"), tool("bench_latency"), tool("bench_publish"),
                   tool("bench_exec_stamp"), tool("bench_pg_roundtrip"),
                   tool("libbench_tasks.so")):
        if not os.path.exists(binary):
            print(f"bench: {binary} is missing; build the bench_tools target", file=sys.stderr)
            return 2
    state = tempfile.mkdtemp(prefix="dbench.")
    os.chmod(state, 0o777)
    pg = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failed = False
    try:
        pg = Postgres(state)
        bench = Bench(state, pg)
        for section in ("throughput", "latency", "memory", "startup", "ctl", "scaling",
                        "growth"):
            if section not in SECTIONS:
                continue
            t0 = time.monotonic()
            try:
                getattr(bench, section)()
                bench.section_seconds[section] = round(time.monotonic() - t0, 1)
            except Exception as e:  # one failed figure must not lose the others
                failed = True
                bench.errors[section] = str(e)
                log(f"{section} failed: {e}")
            log(f"{section}: {time.monotonic() - t0:.0f} s")
        meta = {"cpus": os.cpu_count(), "kernel": f"Linux {platform.release()}",
                "postgres": pg.version, "build": os.path.relpath(BUILD, ROOT),
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.monotonic() - t_start, 1),
                "section_seconds": bench.section_seconds,
                "settings": {k: v for k, v in globals().items() if k.isupper() and
                             k not in ("TARGETS",)},
                "targets": TARGETS}
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            json.dump({"meta": meta, "errors": bench.errors, **bench.results}, f, indent=1)
        print_table(bench.results, meta)
        for section, err in bench.errors.items():
            print(f"{section}: FAILED: {err}")
        print(f"raw figures: {os.path.relpath(OUT, ROOT)}; took {meta['seconds']:.0f} s")
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for svc in list(Service.running):
            svc.stop()
        if pg:
            pg.stop()
        if failed:
            print(f"bench: service logs kept in {state}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", state])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
