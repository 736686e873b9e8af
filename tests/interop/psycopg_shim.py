"""Minimal compatibility shim: Debian 12's psycopg 3.1.7 under dispatcherd (which wants psycopg>=3.2.4).

Three differences matter to dispatcherd (all are psycopg 3.2.x additions):
1. `Connection.notifies()` / `AsyncConnection.notifies()` take no keyword arguments in 3.1;
   dispatcherd calls `notifies(timeout=..., stop_after=...)`. Without the shim the service's
   BrokeredProducer fails with
       TypeError: AsyncConnection.notifies() got an unexpected keyword argument 'timeout'
   and recycles itself in a loop forever, never receiving a task.
2. The sync `Connection.set_autocommit()` does not exist in 3.1 (only the `autocommit`
   property; the async class has it). `create_connection()` in dispatcherd/brokers/pg_notify.py
   calls it, so every sync use (publisher, `dispatcherctl` over pg_notify) fails with
       AttributeError: 'Connection' object has no attribute 'set_autocommit'

3. (not an error, a silent loss) psycopg < 3.2.4 drops notifications that arrive while the
   connection is running a query outside `notifies()` (they go only to notify handlers, and
   dispatcherd registers none). dispatcherd leaves `notifies()` every
   max_connection_idle_seconds to publish a self-check message, and to send control replies,
   so in that window tasks are lost: observed 1 lost task in 500 at 200 tasks/s before this
   part of the shim. psycopg 3.2.4 (PR "Don't lose notifications while notifies() is not
   running") keeps them in a backlog deque that `notifies()` yields first; the shim does
   the same.

Semantics copied from psycopg 3.2.4: `timeout` is a total deadline for the generator
(None = forever), `stop_after` stops after that many notifications (it may yield more
if several arrived in one packet), the connection lock is held for the whole generator,
and the backlog collected while the generator was not running is yielded first.
Applied by our wrappers only (run_dispatcherd.py, run_dispatcherctl.py, publish_task.py, a copy
of ../shared/interop); nothing in upstream's tree is modified.
"""
import asyncio
import select
import time
from collections import deque

import psycopg
from psycopg import errors as e
from psycopg.connection import BaseConnection, Notify
from psycopg.generators import notifies as _notifies_gen

try:  # 3.1
    from psycopg._encodings import pgconn_encoding
except ImportError:  # pragma: no cover
    pgconn_encoding = None

_WAIT_INTERVAL = 0.1
_UNSET = object()


def _enc(conn):
    return pgconn_encoding(conn.pgconn) if pgconn_encoding else conn.pgconn._encoding


def _backlog(conn):
    d = getattr(conn, '_notifies_backlog', _UNSET)
    if d is _UNSET:
        d = conn._notifies_backlog = deque()
    return d


def _notify_handler(wself, pgn):
    """Replacement for BaseConnection._notify_handler: also fill the backlog (psycopg 3.2.4)."""
    self = wself()
    if not self:
        return
    d = _backlog(self)
    if not (self._notify_handlers or d is not None):
        return
    enc = _enc(self)
    n = Notify(pgn.relname.decode(enc), pgn.extra.decode(enc), pgn.be_pid)
    for cb in self._notify_handlers:
        cb(n)
    if d is not None:
        d.append(n)


def _sync_notifies(self, *, timeout=None, stop_after=None):
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = _WAIT_INTERVAL if timeout is None else min(timeout, _WAIT_INTERVAL)
    nreceived = 0
    with self.lock:
        enc = _enc(self)
        d = _backlog(self) or deque()
        self._notifies_backlog = None
        try:
            while True:
                if d:
                    while d:
                        yield d.popleft()
                        nreceived += 1
                else:
                    pgns = []
                    r, _, _ = select.select([self.pgconn.socket], [], [], max(0.0, interval))
                    if r:
                        try:
                            pgns = self.wait(_notifies_gen(self.pgconn))
                        except e.Error as ex:
                            raise ex.with_traceback(None)
                    for pgn in pgns:
                        yield Notify(pgn.relname.decode(enc), pgn.extra.decode(enc), pgn.be_pid)
                        nreceived += 1
                if stop_after is not None and nreceived >= stop_after:
                    break
                if deadline is not None:
                    interval = min(_WAIT_INTERVAL, deadline - time.monotonic())
                    if interval < 0.0:
                        break
        finally:
            self._notifies_backlog = d


async def _async_notifies(self, *, timeout=None, stop_after=None):
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    nreceived = 0
    async with self.lock:
        enc = _enc(self)
        d = _backlog(self) or deque()
        self._notifies_backlog = None
        try:
            while True:
                if d:
                    while d:
                        yield d.popleft()
                        nreceived += 1
                else:
                    try:
                        if deadline is None:
                            pgns = await self.wait(_notifies_gen(self.pgconn))
                        else:
                            # one timer for the rest of the deadline instead of 3.2's 0.1 s polling;
                            # cancellation can only hit while waiting for readability, before any
                            # input is consumed, so nothing is lost
                            pgns = await asyncio.wait_for(self.wait(_notifies_gen(self.pgconn)), max(0.0, deadline - loop.time()))
                    except asyncio.TimeoutError:
                        pgns = []
                    except e.Error as ex:
                        raise ex.with_traceback(None)
                    for pgn in pgns:
                        yield Notify(pgn.relname.decode(enc), pgn.extra.decode(enc), pgn.be_pid)
                        nreceived += 1
                if stop_after is not None and nreceived >= stop_after:
                    break
                if deadline is not None and loop.time() >= deadline:
                    break
        finally:
            self._notifies_backlog = d


def _set_autocommit(self, value):
    self.autocommit = value


def apply():
    """Patch psycopg < 3.2.4 in this process. Must run before connections are created."""
    version = tuple(int(x) for x in psycopg.__version__.split('.')[:3] if x.isdigit())
    if version >= (3, 2, 4):
        return False
    BaseConnection._notify_handler = staticmethod(_notify_handler)
    psycopg.Connection.notifies = _sync_notifies
    psycopg.AsyncConnection.notifies = _async_notifies
    if not hasattr(psycopg.Connection, 'set_autocommit'):
        psycopg.Connection.set_autocommit = _set_autocommit
    return True
