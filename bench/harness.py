"""What bench/bench.py drives its measurements with: the throwaway Postgres, a dispatcherd with
the bench config, its /metrics, the processes under it (/proc), the bench tools' JSON output and
the bench.stamp records."""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANNEL = "bench"
NOOP = "dispatcherd.builtin.noop"
STAMP = struct.Struct("<40sqqiiq")  # bench/stamp_record.h


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run_tool(args, timeout=900):
    """Runs a bench tool and returns its JSON line; raises with its stderr on failure."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(args[0])} exited {p.returncode}: "
                           f"{p.stderr.strip()[-500:]} {p.stdout.strip()[-300:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc


def smaps(pid):
    """kB of Pss, private (Private_Clean + Private_Dirty) and Rss from smaps_rollup."""
    out = {"pss_kb": 0, "private_kb": 0, "rss_kb": 0}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key == "Pss":
                out["pss_kb"] = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                out["private_kb"] += int(rest.split()[0])
            elif key == "Rss":
                out["rss_kb"] = int(rest.split()[0])
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


# ---------------------------------------------------------------- Postgres and the service


class Postgres:
    def __init__(self, state):
        self.state = state
        subprocess.run([f"{ROOT}/tests/support/pg_ctl.sh", "start", state], check=True,
                       stdout=subprocess.DEVNULL, start_new_session=True)
        env = dict(line.strip().split("=", 1) for line in open(f"{state}/env") if "=" in line)
        self.dsn = env["DSN"].strip('"')
        self.version = psycopg.connect(self.dsn).execute("SHOW server_version").fetchone()[0]

    def stop(self):
        subprocess.run([f"{ROOT}/tests/support/pg_ctl.sh", "stop", self.state],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Service:
    """One dispatcherd with the bench config; `with Service(...) as s:` stops it on exit."""

    running = set()  # for the emergency stop

    def __init__(self, bench, min_workers, max_workers=None, on_start=None, exec_stamp=None,
                 name="svc"):
        """`bench` gives state (a directory), pg.dsn, conn (a psycopg connection), build and
        max_queued; on_start names the stamp file of an on-start bench.stamp task, exec_stamp
        the file bench_exec_stamp writes its time to before exec'ing the service."""
        self.bench = bench
        self.min_workers = min_workers
        self.port = free_port()
        self.socket_path = os.path.join(bench.state, "ctl.sock")
        self.config = os.path.join(bench.state, f"{name}.yml")
        producers = ""
        if on_start:
            producers = ("producers:\n  OnStartProducer:\n    task_list:\n"
                         f"      bench.stamp: {{kwargs: {{file: \"{on_start}\"}}}}\n")
        with open(self.config, "w") as f:
            f.write(f"""version: 2
service:
  pool_kwargs: {{min_workers: {min_workers}, max_workers: {max_workers or min_workers}}}
  main_kwargs: {{node_id: bench}}
  metrics_kwargs: {{host: 127.0.0.1, port: {self.port}}}
brokers:
  pg_notify:
    config: {{conninfo: "{bench.pg.dsn} application_name=dispatcherd_bench"}}
    channels: [{CHANNEL}]
    default_publish_channel: {CHANNEL}
    max_connection_idle_seconds: null
  socket:
    socket_path: {self.socket_path}
{producers}publish:
  default_control_broker: pg_notify
extensions:
  max_queued_tasks: {bench.max_queued}
  task_libraries: [{os.path.join(bench.build, "bench", "libbench_tasks.so")}]
  log_level: WARNING
""")
        argv = [os.path.join(bench.build, "dispatcherd", "dispatcherd"), "--config", self.config,
                "--log-level", "WARNING"]
        if exec_stamp:
            argv = [os.path.join(bench.build, "bench", "bench_exec_stamp"), exec_stamp] + argv
        self.log = open(os.path.join(bench.state, f"{name}.log"), "a")
        # Its own session: a Ctrl-C reaches only this script, which stops the service itself.
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid
        Service.running.add(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dispatcherd exited {self.proc.returncode}; see "
                                   f"{self.log.name}")
            try:
                m = self.metrics()
                if (value(m, "dispatcherd_pg_connected") == 1
                        and value(m, "dispatcherd_workers", status="ready") >= self.min_workers):
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise RuntimeError("dispatcherd did not become ready")
        # dispatcherd_pg_connected is 1 once the connection is up, which can be before its
        # LISTEN is: probe until a notification really arrives.
        received = lambda: value(self.metrics(), "dispatcher_messages_received_total")
        base, n = received(), 0
        while received() <= base:
            if time.monotonic() > deadline:
                raise RuntimeError("dispatcherd does not receive notifications")
            self.bench.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(
                {"task": NOOP, "uuid": f"probe-{self.pid}-{n}"})))
            n += 1
            time.sleep(0.02)
        return self

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return parse_metrics(r.read().decode())

    def processes(self):
        """(zygote pids, worker pids): the zygote by its process title."""
        kids = descendants(self.pid)
        zyg = [p for p in kids if "zygote" in cmdline(p)]
        return zyg, [p for p in kids if p not in zyg]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        Service.running.discard(self)
        self.log.close()


def parse_metrics(text):
    """[(name, {label: value}, value)] from Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, val = line.rpartition(" ")
        name, labels = head, {}
        if "{" in head:
            name, _, rest = head.partition("{")
            for part in rest.rstrip("}").split(","):
                if "=" in part:
                    k, _, v = part.partition("=")
                    labels[k.strip()] = v.strip().strip('"')
        try:
            out.append((name, labels, float(val)))
        except ValueError:
            pass
    return out


def value(metrics, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for n, l, v in metrics if n == name and all(l.get(k) == x
                                                             for k, x in labels.items()))


def histogram(metrics, name):
    """{upper bound: cumulative count} of a histogram."""
    return {float(l["le"]): v for n, l, v in metrics if n == name + "_bucket"}


def histogram_quantiles(before, after, qs=(0.5, 0.99)):
    """Bucket-interpolated quantiles (µs) of the observations between two scrapes; a quantile
    above the largest finite bound is reported as that bound with '>'."""
    bounds = sorted(after)
    cum = [after[b] - before.get(b, 0) for b in bounds]
    total = cum[-1] if cum else 0
    out = {"observations": total}
    for q in qs:
        key = f"p{q * 100:g}".replace(".", "") + "_us"
        if total <= 0:
            out[key] = None
            continue
        target, prev_b, prev_c = q * total, 0.0, 0.0
        for b, c in zip(bounds, cum):
            if c >= target:
                if b == float("inf"):
                    out[key] = f">{prev_b * 1e6:g}"
                else:
                    frac = (target - prev_c) / (c - prev_c) if c > prev_c else 1.0
                    out[key] = (prev_b + (b - prev_b) * frac) * 1e6
                break
            prev_b, prev_c = b, c
    out["buckets_us"] = [b * 1e6 for b in bounds if b != float("inf")]
    return out


def read_stamps(path):
    """[(uuid, start_ns, pub_ns, worker_id, pid)] from a bench.stamp file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for i in range(0, len(data) - len(data) % STAMP.size, STAMP.size):
        u, start, pub, wid, pid, _added = STAMP.unpack_from(data, i)
        out.append((u.rstrip(b"\0").decode(), start, pub, wid, pid))
    return out


def wait_for(pred, timeout, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = pred()
        if r:
            return r
        time.sleep(step)
    raise RuntimeError(f"timed out waiting for {what}")
