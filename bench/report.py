"""The table `make bench` prints: bench.py's results grouped by section, each figure as
median [min..max] over its runs, next to the targets of DESIGN section 10."""
import statistics
from types import SimpleNamespace


def med(values):
    """(median, min, max) of the non-None values, or None."""
    v = [x for x in values if x is not None]
    return (statistics.median(v), min(v), max(v)) if v else None


def fmt(x, digits=0):
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    return f"{x:,.{digits}f}"


def cell(stat, digits=0, unit=""):
    """'median [min..max]'."""
    if stat is None:
        return "—"
    m, lo, hi = stat
    if lo == hi:
        return f"{fmt(m, digits)}{unit}"
    return f"{fmt(m, digits)}{unit} [{fmt(lo, digits)}..{fmt(hi, digits)}]"


def pct(stat):
    if stat is None:
        return "—"
    m, lo, hi = stat
    if f"{lo:.0%}" == f"{hi:.0%}":
        return f"{m:.0%}"
    return f"{m:.0%} [{lo:.0%}..{hi:.0%}]"


def print_table(res, meta):
    """Prints the figures of `res` (bench.py's results) grouped by section, with the settings
    and targets recorded in `meta`."""
    S = SimpleNamespace(**meta["settings"])
    T = meta["targets"]
    p = print
    p()
    p(f"dispatcherd benchmarks — {meta['cpus']} CPUs, {meta['kernel']}, PostgreSQL "
      f"{meta['postgres']} (Unix socket), build {meta['build']}, log level WARNING")
    p(f"Each figure: median [min..max] of {S.RUNS} runs unless said otherwise; targets from "
      "DESIGN section 10.")

    if "throughput" in res:
        rows = res["throughput"]
        p()
        p("1. Throughput — no-op tasks end to end (publish start → the burst's last task, a "
          "bench.stamp, started),")
        p("   next to the transport ceiling measured in the same run (the same burst published "
          "the same way on another")
        p("   channel, received by a bare LISTEN connection). CPU per task from "
          "/proc/<pid>/schedstat: main, and all")
        p("   of main's descendants (zygote + workers). Payloads ≈200 B, distinct.")
        titles = {"batch": "(a) batching publisher: 100 pg_notify per statement "
                           f"(target {T['tasks_per_s_batch']} tasks/s)",
                  "single": "(b) one statement (one transaction) per task"}
        for method in [m for m in S.METHODS if any(r["method"] == m for r in rows)]:
            p(f"   {titles.get(method, method)}")
            p(f"   {'burst':>8} {'workers':>7}  {'tasks/s':<27} {'ceiling/s':<27} "
              f"{'of ceiling':<17} {'main µs/task':<19} {'workers µs/task':<19}")
            for count in S.COUNTS:
                for w in S.WORKERS:
                    rs = [r for r in rows if r["method"] == method and r["count"] == count
                          and r["workers"] == w]
                    if not rs:
                        continue
                    p(f"   {count:>8,} {w:>7}  "
                      f"{cell(med(r['tasks_per_s'] for r in rs)):<27} "
                      f"{cell(med(r.get('ceiling_per_s') for r in rs)):<27} "
                      f"{pct(med(r.get('fraction_of_ceiling') for r in rs)):<17} "
                      f"{cell(med(r['main_cpu_us_per_task'] for r in rs), 1):<19} "
                      f"{cell(med(r['worker_cpu_us_per_task'] for r in rs), 1):<19}")
        if any(r["method"] == "single" for r in rows):
            p(f"   (b)'s ceiling is measured on min(burst, {S.SINGLE_CEILING_MAX:,}) tasks: one "
              "statement per task publishes at a steady rate.")
        p(f"   targets: tasks/s {T['tasks_per_s_batch']} with the batching publisher; "
          f"CPU per task main {T['cpu_main_us']} µs, worker {T['cpu_worker_us']} µs")

    if "latency" in res:
        rows = res["latency"]
        p()
        p("2. Latency at fixed publish rates — one statement per task, paced; bench.stamp tasks "
          f"on {S.POOL} workers; µs")
        p("   publish → start: the task's CLOCK_REALTIME at entry minus the publisher's, taken "
          "just before sending")
        p("   service adds: main taking the notification it read → task start, per task "
          "(TaskContext::received_at)")
        p("   main's part (histogram): dispatcherd_task_start_latency_seconds, main read → "
          "handed to a worker, bucket-interpolated")
        p("   2nd LISTEN → start: task start minus when a bare LISTEN connection on the same "
          "channel got the notification;")
        p("   Postgres wakes its backend and main's separately, so this adds their skew (it can "
          "be negative). Reference only.")
        p("   transport: publish → that bare LISTEN connection.")
        p(f"   {'rate':>8}  {'measure':<30} {'p50':<22} {'p99':<24} {'p99.9':<24} target")
        for rate in S.RATES:
            rs = [r for r in rows if r["rate"] == rate]
            if not rs:
                continue
            achieved = med(r["achieved_rate"] for r in rs)
            lines = [("publish → start", "publish_to_start",
                      f"p50 {T['publish_to_start_p50_us_1000']} at 1,000/s"),
                     ("service adds (read → start)", "read_to_start",
                      f"{T['service_adds_us_1000']} at 1,000/s"),
                     ("main's part (histogram)", "service_histogram", ""),
                     ("2nd LISTEN → start (reference)", "receive_to_start", ""),
                     ("transport (reference)", "publish_to_receive", "")]
            for i, (label, key, target) in enumerate(lines):
                def q(name):
                    vals = [r[key][name] if r.get(key) else None for r in rs]
                    if any(isinstance(v, str) for v in vals):
                        return "/".join(str(v) for v in vals)
                    return cell(med(vals))
                p(f"   {(f'{rate:,}/s' if i == 0 else ''):>8}  {label:<30} {q('p50_us'):<22} "
                  f"{q('p99_us'):<24} {q('p999_us'):<24} {target}")
            late = sum(r["late_sends"] for r in rs)
            p(f"   {'':>8}  (achieved {cell(achieved)} tasks/s; "
              f"{sum(r['started'] for r in rs):,} tasks over {len(rs)} runs"
              + (f"; {late:,} sends started more than one interval late"
                 if late > 0.01 * sum(r["count"] for r in rs) else "") + ")")

    if "memory_idle" in res:
        idle = res["memory_idle"]
        p()
        p(f"3. Memory — {S.POOL} workers idle after a 20,000-task burst; kB; private = "
          "Private_Clean + Private_Dirty, from /proc/<pid>/smaps_rollup")
        p(f"   {'process':<26} {'private kB':<24} {'PSS kB':<24} {'RSS kB':<24} target (private)")

        def mem_row(label, pick, target=""):
            def c(k):
                return cell(med(pick(s, k) for s in idle))
            p(f"   {label:<26} {c('private_kb'):<24} {c('pss_kb'):<24} {c('rss_kb'):<24} {target}")

        mem_row("main", lambda s, k: s["main"][k], T["main_private_kb"])
        mem_row("main before the burst", lambda s, k: s["main_fresh"][k])
        mem_row("worker (median of pool)",
                lambda s, k: statistics.median(w[k] for w in s["workers"]) if s["workers"]
                else None, T["worker_private_kb"] + " each")
        mem_row("worker (max of pool)",
                lambda s, k: max(w[k] for w in s["workers"]) if s["workers"] else None)
        mem_row("zygote", lambda s, k: sum(z[k] for z in s["zygote"]) if s["zygote"] else None)
        p(f"   {'whole service (PSS sum)':<26} {'':<24} "
          f"{cell(med(s['service_pss_kb'] for s in idle)):<24} {'':<24} "
          f"PSS {T['service_pss_kb']}")
        p(f"   idle CPU over {S.IDLE_SECONDS} s: main "
          f"{cell(med(s['idle_cpu_ms_per_s']['main'] for s in idle), 3)} ms/s, children "
          f"{cell(med(s['idle_cpu_ms_per_s']['children'] for s in idle), 3)} ms/s "
          f"(target {T['idle_cpu']})")
    if "memory_backlog" in res:
        b = res["memory_backlog"]
        p(f"   queued tasks (1 run): {b['backlog']:,} no-op messages of 200 B published "
          f"100 per statement while all {S.POOL} workers are held busy (bench.hold):")
        p(f"     main private {b['main_before']['private_kb']:,} kB → "
          f"{b['main_queued']['private_kb']:,} kB queued → "
          f"{b['main_drained']['private_kb']:,} kB drained: "
          f"{b['bytes_per_queued_task']:,.0f} bytes per queued task "
          f"(target {T['bytes_per_queued_task']})")
        p(f"     published in {b['publish']['seconds']:.1f} s, all queued after "
          f"{b['read_seconds']:.1f} s, overflow {b['queue_overflow']:.0f}; "
          f"drained at {b['drain_tasks_per_s']:,.0f} tasks/s")

    if "startup" in res:
        rs = res["startup"]
        p()
        p(f"4. Start-up — exec of dispatcherd → the on-start bench.stamp task running "
          f"({S.POOL} workers, pg_notify + socket brokers, metrics on)")
        p(f"   {cell(med(r['ms'] for r in rs), 1)} ms over {len(rs)} starts "
          f"(target {T['exec_to_first_task_ms']} ms)")

    if "ctl" in res:
        c = res["ctl"]
        p()
        p("5. `dispatcherctl running` on an idle service — wall clock of the whole process, ms "
          f"(median [min..max] of {S.CTL_RUNS})")
        p(f"   socket     {cell(med(c['socket']), 1):<28} target {T['ctl_socket_ms']} ms")
        p(f"   pg_notify  {cell(med(c['pg_notify']), 1):<28} "
          f"target {T['ctl_pg_notify_ms']} ms")
        if c.get("pg_floor"):
            p(f"   floor      {cell(med(c['pg_floor']), 1):<28} a fresh libpq client's connect + "
              "LISTEN + NOTIFY to itself (bench_pg_roundtrip)")

    if "scaling" in res:
        rs = res["scaling"]
        p()
        p("6. Pool growth — 24 sleeps of 0.5 s published at once to a pool of min 1, max 12 "
          "workers")
        p(f"   all finished after {cell(med(r['seconds'] for r in rs), 2)} s (ideal ≈ 1.0 s; "
          f"upstream 5.7 s), peak workers {cell(med(r['peak_workers'] for r in rs))}")

    if "growth" in res:
        g = res["growth"]
        p()
        p(f"7. How cost grows ({S.GROWTH_RUNS} run each; median [min..max] when more)")
        if g["workers"]:
            p(f"   workers ({S.GROWTH_COUNT:,}-task bursts, 100 per statement):")
            p(f"   {'workers':>9}  {'tasks/s':<27} {'of ceiling':<17} {'main µs/task':<19} "
              "workers µs/task")
            for w in S.GROWTH_WORKERS:
                rs = [r for r in g["workers"] if r["workers"] == w]
                if rs:
                    p(f"   {w:>9}  {cell(med(r['tasks_per_s'] for r in rs)):<27} "
                      f"{pct(med(r['fraction_of_ceiling'] for r in rs)):<17} "
                      f"{cell(med(r['main_cpu_us_per_task'] for r in rs), 1):<19} "
                      f"{cell(med(r['worker_cpu_us_per_task'] for r in rs), 1)}")
        if g["payload"]:
            p(f"   payload size (C++ Publisher, 100 messages per pipelined transaction, chunked "
              f"above 7,999 B; {S.POOL} workers):")
            p(f"   {'bytes':>9}  {'tasks':>7}  {'tasks/s':<22} {'MB/s':<8} {'ceiling/s':<12} "
              f"{'of ceiling':<11} {'main µs/task':<13} workers µs/task")
            for size in S.GROWTH_PAYLOADS:
                rs = [r for r in g["payload"] if r["payload_bytes"] == size]
                if rs:
                    t = med(r["tasks_per_s"] for r in rs)
                    p(f"   {size:>9,}  {rs[0]['count']:>7,}  {cell(t):<22} "
                      f"{t[0] * size / 1e6:<8.1f} "
                      f"{fmt(med(r['ceiling_per_s'] for r in rs)[0]):<12} "
                      f"{pct(med(r['fraction_of_ceiling'] for r in rs)):<11} "
                      f"{cell(med(r['main_cpu_us_per_task'] for r in rs), 1):<13} "
                      f"{cell(med(r['worker_cpu_us_per_task'] for r in rs), 1)}")
        if g["backlog"]:
            p(f"   backlog (queued while all {S.POOL} workers are held busy, then freed at once; "
              "drain = first to last task start):")
            p(f"   {'tasks':>9}  {'drain tasks/s':<27} all read after")
            for n in S.GROWTH_BACKLOGS:
                rs = [r for r in g["backlog"] if r["backlog"] == n]
                if rs:
                    p(f"   {n:>9,}  {cell(med(r['drain_tasks_per_s'] for r in rs)):<27} "
                      f"{cell(med(r['read_seconds'] for r in rs), 2)} s")
    p()
