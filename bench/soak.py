#!/usr/bin/python3
"""`make soak`: a steady stream of tasks with random cancels, timeouts, failures and worker
kills for SOAK_SECONDS (default 600), against its own Postgres and service.

Passes when, at the end:
  * every published task is accounted for: succeeded + failed + cancelled + timed out +
    worker died (the `main` control reply's counters) equals what was published, and nothing
    is left queued, running, blocked or delayed;
  * main's private memory (Private_Clean + Private_Dirty of smaps_rollup) grew by at most
    SOAK_MEM_TOLERANCE_KB (default 1024) between the median of the first samples after
    warm-up and the median of the last ones;
  * main's open file descriptors are the same (+-2) at those two points.
Prints a summary and writes bench/results/soak.json. Not part of `make test`.
"""
import json
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
RATE = float(os.environ.get("SOAK_RATE", "200"))  # tasks per second
MEM_TOLERANCE_KB = int(os.environ.get("SOAK_MEM_TOLERANCE_KB", "1024"))
KILL_EVERY = float(os.environ.get("SOAK_KILL_EVERY", "10"))
CHANNEL = "soak"


def private_kb(pid):
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def worker_pids(main_pid):
    # main → zygote → workers; command tasks would be below the workers.
    return [w for z in children(main_pid) for w in children(z)]


def control(conn, command, data=None, timeout=5.0):
    """Sends a control command over pg_notify and returns the first reply, or None."""
    reply_to = "soak_reply_" + uuid.uuid4().hex
    got = []
    # Debian's psycopg 3.1 has no notifies(timeout=...): collect through a handler, which runs
    # whenever the connection processes input, and poke it with a trivial query.
    handler = lambda n: got.append(n) if n.channel == reply_to else None
    conn.add_notify_handler(handler)
    try:
        conn.execute(f"LISTEN {reply_to}")
        msg = {"control": command, "reply_to": reply_to, "control_data": data or {}}
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps(msg)))
        deadline = time.monotonic() + timeout
        while not got:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            select.select([conn.fileno()], [], [], left)
            conn.execute("SELECT 1")
        return json.loads(got[0].payload)
    finally:
        conn.execute(f"UNLISTEN {reply_to}")
        conn.remove_notify_handler(handler)


def main():
    state = tempfile.mkdtemp(prefix="dsoak.")
    subprocess.run([f"{ROOT}/tests/support/pg_ctl.sh", "start", state], check=True,
                   stdout=subprocess.DEVNULL)
    env = dict(line.strip().split("=", 1) for line in open(f"{state}/env") if "=" in line)
    dsn = env["DSN"].strip('"')
    os.chmod(state, 0o777)
    config = f"""version: 2
service:
  pool_kwargs: {{min_workers: 2, max_workers: 6}}
  main_kwargs: {{node_id: soak}}
brokers:
  pg_notify:
    config: {{conninfo: "{dsn} application_name=dispatcherd_soak"}}
    channels: [{CHANNEL}]
    default_publish_channel: {CHANNEL}
extensions:
  cancel_grace_seconds: 0.5
  shutdown_timeout_seconds: 5
"""
    with open(f"{state}/soak.yml", "w") as f:
        f.write(config)
    log = open(f"{state}/service.log", "w")
    svc = subprocess.Popen([f"{ROOT}/{BUILD}/dispatcherd/dispatcherd", "--config",
                            f"{state}/soak.yml", "--log-level", "WARNING"],
                           stdout=log, stderr=subprocess.STDOUT)
    ok = False
    try:
        ok = soak(svc, dsn)
    finally:
        svc.send_signal(signal.SIGTERM)
        try:
            svc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            svc.kill()
        subprocess.run([f"{ROOT}/tests/support/pg_ctl.sh", "stop", state],
                       stdout=subprocess.DEVNULL)
        if ok:
            subprocess.run(["rm", "-rf", state])
        else:
            print(f"soak: service log kept in {state}/service.log", file=sys.stderr)
    return 0 if ok else 1


def soak(svc, dsn):
    pub = psycopg.connect(dsn, autocommit=True)
    ctl = psycopg.connect(dsn, autocommit=True)
    start_deadline = time.monotonic() + 20
    while control(ctl, "alive", timeout=1) is None:
        if time.monotonic() > start_deadline:
            print("soak: the service did not answer alive", file=sys.stderr)
            return False
    rng = random.Random(int(os.environ.get("SOAK_SEED", "1")))
    published = 0
    kinds = {"noop": 0, "fail": 0, "timeout": 0, "cancel": 0, "sleep": 0}
    to_cancel = []  # (when, uuid)
    samples = []  # (t, private_kb, fds)
    kills = 0
    t0 = time.monotonic()
    next_kill = t0 + KILL_EVERY
    next_sample = t0
    tick = 0.1
    per_tick = RATE * tick
    carry = 0.0
    while True:
        now = time.monotonic()
        if now - t0 >= SECONDS:
            break
        carry += per_tick
        batch = []
        while carry >= 1:
            carry -= 1
            u = uuid.uuid4().hex
            r = rng.random()
            if r < 0.80:
                kind, body = "noop", {"task": "dispatcherd.builtin.noop"}
            elif r < 0.85:
                kind, body = "fail", {"task": "dispatcherd.builtin.fail"}
            elif r < 0.90:
                kind, body = "timeout", {"task": "dispatcherd.builtin.sleep", "args": [2],
                                         "timeout": 0.2}
            elif r < 0.95:
                kind, body = "cancel", {"task": "dispatcherd.builtin.sleep", "args": [5]}
                to_cancel.append((now + rng.uniform(0.05, 1.0), u))
            else:
                kind, body = "sleep", {"task": "dispatcherd.builtin.sleep",
                                       "args": [rng.uniform(0.01, 0.3)]}
            body["uuid"] = u
            kinds[kind] += 1
            batch.append(json.dumps(body))
        if batch:
            values = ", ".join(["(pg_notify(%s, %s))"] * len(batch))
            params = [p for b in batch for p in (CHANNEL, b)]
            pub.execute(f"SELECT * FROM (VALUES {values}) AS v", params)
            published += len(batch)
        due = [u for when, u in to_cancel if when <= now]
        to_cancel = [(when, u) for when, u in to_cancel if when > now]
        for u in due:
            control(ctl, "cancel", {"uuid": u}, timeout=0.5)
        if now >= next_kill:
            workers = worker_pids(svc.pid)
            if workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills += 1
            next_kill = now + KILL_EVERY
        if now >= next_sample:
            samples.append((now - t0, private_kb(svc.pid), fd_count(svc.pid)))
            next_sample = now + max(1.0, SECONDS / 60)
        time.sleep(max(0.0, tick - (time.monotonic() - now)))

    # Drain: wait until every task has ended.
    final = None
    drain_deadline = time.monotonic() + 60
    while time.monotonic() < drain_deadline:
        final = control(ctl, "main", timeout=2)
        p = (final or {}).get("pool", {})
        ended = sum(p.get(k, 0) for k in ("succeeded_count", "failed_count", "cancelled_count",
                                          "timed_out_count", "worker_died_count"))
        idle = all(p.get(k, 1) == 0 for k in ("queued_count", "blocked_count", "delayed_count"))
        if ended >= published and idle:
            break
        time.sleep(0.5)
    samples.append((time.monotonic() - t0, private_kb(svc.pid), fd_count(svc.pid)))

    p = (final or {}).get("pool", {})
    outcome = {k: p.get(k, 0) for k in ("succeeded_count", "failed_count", "cancelled_count",
                                        "timed_out_count", "worker_died_count",
                                        "queue_overflow_count")}
    ended = sum(v for k, v in outcome.items() if k != "queue_overflow_count")
    warm = [s for s in samples if s[0] >= min(60.0, SECONDS * 0.1)]
    head, tail = warm[:3], warm[-3:]
    mem_start = statistics.median(s[1] for s in head) if head else 0
    mem_end = statistics.median(s[1] for s in tail) if tail else 0
    fd_start = statistics.median(s[2] for s in head) if head else 0
    fd_end = statistics.median(s[2] for s in tail) if tail else 0
    checks = {
        "every task accounted for": ended == published,
        f"main private memory growth <= {MEM_TOLERANCE_KB} kB": mem_end - mem_start <= MEM_TOLERANCE_KB,
        "main open fds flat (+-2)": abs(fd_end - fd_start) <= 2,
        "service still running": svc.poll() is None,
    }
    result = {"seconds": SECONDS, "rate": RATE, "published": published, "kinds": kinds,
              "worker_kills": kills, "outcome": outcome,
              "main_private_kb": {"start": mem_start, "end": mem_end},
              "main_fds": {"start": fd_start, "end": fd_end}, "samples": samples,
              "checks": checks}
    os.makedirs(f"{ROOT}/bench/results", exist_ok=True)
    with open(f"{ROOT}/bench/results/soak.json", "w") as f:
        json.dump(result, f, indent=1)
    print(f"soak: {SECONDS:.0f} s at {RATE:.0f} tasks/s: published {published} {kinds}, "
          f"{kills} worker kills")
    print(f"soak: outcomes {outcome} (sum {ended})")
    print(f"soak: main private memory {mem_start:.0f} -> {mem_end:.0f} kB, "
          f"fds {fd_start:.0f} -> {fd_end:.0f}")
    for name, passed in checks.items():
        print(f"soak: {'ok  ' if passed else 'FAIL'} {name}")
    return all(checks.values())


if __name__ == "__main__":
    sys.exit(main())
