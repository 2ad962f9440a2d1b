"""One watcher per process for every open event stream: the database load does not grow with them.

Streams register the job they follow (``open_stream``); the watcher learns that a job
changed and reads it once, then hands that one read to every stream of the job. How it
learns of a change (``FITTING_EVENTS_BACKEND``, ``auto`` by default):

- ``redis`` (``REDIS_URL`` set): every process publishes the job's id on a Redis channel
  after each committed change (``publish``, called from ``fitting.notify.job_changed``); the
  watcher holds one pub/sub connection per process.
- ``postgres`` (PostgreSQL, no Redis): the same notice by ``NOTIFY``; the watcher holds one
  ``LISTEN`` connection per process (psycopg 3, async), outside Django's pool.
- ``poll`` (SQLite): one query per ``FITTING_EVENTS_POLL`` seconds for all watched jobs
  together (``id IN (…)``, their ``updated_at`` only).

With a notice backend a notice can still be lost (the listener reconnecting, Redis
restarting): the watcher also re-checks all watched jobs with that same batched query every
``FITTING_EVENTS_RECHECK`` seconds, and right after each (re)connection.

The watcher runs in the event loop of the streams: it starts with the first subscription
and stops (its connection closed, its tasks cancelled) when the last one goes. A process
with one event loop (uvicorn) has one watcher; tests that run each request in a new loop
get one per loop, each gone with its last stream.

The per-user cap (``FITTING_EVENTS_PER_USER``) counts the streams open in this process.

A stream may be closed from any thread (Django closes a response through ``sync_to_async``,
on a thread of its own): the watcher itself only ever changes on its loop's thread, where a
removal from elsewhere is handed with ``call_soon_threadsafe``. asyncio allows no other way
(a task cancelled or created off its loop's thread may never wake up).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from contextvars import Context
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections

from fitting.metrics import STREAMS_REPORT_EVERY, streams_report
from fitting.models import FittingResult
from fitting.selectors import fitting_stamps, fitting_with_details

logger = logging.getLogger(__name__)

RECONNECT_DELAY = 1.0
MAX_RECONNECT_DELAY = 30.0
T = TypeVar("T")


# --- which backend --------------------------------------------------------------------------
def backend() -> str:
    """``redis``, ``postgres`` or ``poll``: the setting, or (``auto``) what is configured."""
    chosen = settings.FITTING_EVENTS_BACKEND
    if chosen != "auto":
        return chosen
    if settings.REDIS_URL:
        return "redis"
    if connections["default"].vendor == "postgresql":
        return "postgres"
    return "poll"


# --- publishing a notice (any process, after the change has committed) ---------------------
@functools.cache
def _redis_client(url: str):
    import redis

    return redis.Redis.from_url(
        url, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT, socket_timeout=settings.REDIS_TIMEOUT
    )


def publish(job_id: str) -> None:
    """Tell every process's watcher that ``job_id`` changed. Never raises: a lost notice is
    found by the watchers' periodic re-check."""
    chosen = backend()
    try:
        if chosen == "redis":
            _redis_client(settings.REDIS_URL).publish(settings.FITTING_EVENTS_CHANNEL, job_id)
        elif chosen == "postgres":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [settings.FITTING_EVENTS_CHANNEL, job_id])
    except Exception:
        logger.warning("could not publish the change of job %s (%s)", job_id, chosen, exc_info=True)


# --- what a stream holds ----------------------------------------------------------------------
class Change:
    """One read of a changed job (None: it is gone), shared by every stream of the job.

    ``rendered`` keeps each rendering (the JSON depends on the request's host and language),
    so N streams of one job render it once per variant, not N times.
    """

    __slots__ = ("_renders", "job")

    def __init__(self, job: FittingResult | None) -> None:
        self.job = job
        self._renders: dict[Any, Any] = {}

    def rendered(self, key: Any, render: Callable[[FittingResult], T]) -> T:
        if key not in self._renders:
            self._renders[key] = render(self.job)
        return self._renders[key]


class TooManyStreams(Exception):
    """The user has FITTING_EVENTS_PER_USER streams open in this process already."""


class Subscription:
    """An open stream: its user's slot under the cap, and the job it follows.

    ``changed()`` is done when a new ``change`` is there; ``close()`` (idempotent) gives the
    slot back and leaves the watcher. It also runs if the stream is dropped unclosed.
    """

    def __init__(self, *, user_id: int, job_id: str) -> None:
        self.user_id = user_id
        self.job_id = job_id
        self.stamp: datetime | None = None  # the updated_at this stream has seen
        self.change: Change | None = None
        self.closed = False
        self._watcher: Watcher | None = None
        self._loop = asyncio.get_running_loop()
        self._untaken = False  # a change has come that the stream has not taken
        self._waiter: asyncio.Future | None = None

    def seen(self, stamp: datetime) -> None:
        """The stream has shown the job as of ``stamp`` (its first read)."""
        if self.stamp is None:
            self.stamp = stamp

    def deliver(self, change: Change) -> None:
        """On the loop's thread. One plain future per waiting stream, set here: no asyncio.Event
        and no timeout object per wait, which at thousands of streams per change are the
        allocations the garbage collector then walks (bench/README.md §8)."""
        self.change = change
        self.stamp = change.job.updated_at if change.job is not None else None
        self._untaken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def changed(self) -> asyncio.Future:
        """A future that is done (True) once a change has come that ``take()`` has not taken."""
        waiter = self._waiter = self._loop.create_future()
        if self._untaken:
            waiter.set_result(True)
        return waiter

    def take(self) -> Change | None:
        self._untaken = False
        return self.change

    def close(self) -> None:
        """Safe from any thread; the slot is back at once, the watcher is left on its loop."""
        with _lock:
            if self.closed:
                return
            self.closed = True
            _release(self.user_id)
            joined, self._watcher = self._watcher, None
        if joined is not None:
            joined.remove(self)


# The slots are taken on a loop's thread and given back on any: one lock for both.
_lock = threading.Lock()
_open_by_user: dict[int, int] = {}
_watchers: dict[asyncio.AbstractEventLoop, Watcher] = {}
_final_reports: set[asyncio.Task] = set()  # a stopped watcher's last count, kept until sent


def open_stream_count() -> int:
    """Event streams open in this process (for metrics)."""
    return sum(_open_by_user.values())


def _release(user_id: int) -> None:
    """Give one of the user's slots back (under ``_lock``)."""
    left = _open_by_user.get(user_id, 0) - 1
    if left > 0:
        _open_by_user[user_id] = left
    else:
        _open_by_user.pop(user_id, None)


def open_stream(*, user_id: int, job_id: str) -> Subscription:
    """Take one of the user's stream slots and follow ``job_id``; call in the stream's loop.

    Raises TooManyStreams when the user has FITTING_EVENTS_PER_USER open (0: no cap).
    """
    cap = settings.FITTING_EVENTS_PER_USER
    with _lock:
        if cap and _open_by_user.get(user_id, 0) >= cap:
            raise TooManyStreams
        _open_by_user[user_id] = _open_by_user.get(user_id, 0) + 1
    subscription = Subscription(user_id=user_id, job_id=str(job_id))
    loop = asyncio.get_running_loop()
    with _lock:
        watcher = _watchers.get(loop)
        if watcher is None:
            watcher = _watchers[loop] = Watcher(loop)
    watcher.add(subscription)
    return subscription


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def current_watcher() -> Watcher | None:
    """The watcher of the running loop, if any stream is open in it (for tests and metrics)."""
    loop = _running_loop()
    return None if loop is None else _watchers.get(loop)


# --- database reads, in the loop's default executor, connections closed after -------------------
def _closing(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(wrapper, thread_sensitive=False)


_read_stamps = _closing(lambda job_ids: fitting_stamps(job_ids=job_ids))
_read_job = _closing(lambda job_id: fitting_with_details(job_id=job_id))


_report_streams = _closing(lambda count: streams_report(count=count))


# --- the watcher -----------------------------------------------------------------------------
class Watcher:
    """Every subscription of one event loop, and the one task that learns of changes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.backend = backend()
        self.subscriptions: dict[str, set[Subscription]] = {}
        self.loads = 0  # reads of a changed job (one per change, whatever the number of streams)
        self.checks = 0  # batched updated_at queries (polls and re-checks)
        self.notices = 0  # notices received from Redis or PostgreSQL
        self.listening = asyncio.Event()  # the notice connection is up (redis, postgres)
        self._task: asyncio.Task | None = None
        self._refreshing: dict[str, bool] = {}  # job id → changed again while being read
        self._refreshes: set[asyncio.Task] = set()

    # subscriptions
    def add(self, subscription: Subscription) -> None:
        subscription._watcher = self
        self.subscriptions.setdefault(subscription.job_id, set()).add(subscription)
        if self._task is None:
            # A context of its own: not that of the request that happened to start it.
            self._task = self.loop.create_task(self._run(), name="fitting-events-watcher", context=Context())

    def remove(self, subscription: Subscription) -> None:
        """Stop following ``subscription``; from any thread, the change itself on the loop."""
        if _running_loop() is self.loop:
            self._remove(subscription)
            return
        try:
            self.loop.call_soon_threadsafe(self._remove, subscription)
        except RuntimeError:  # the loop is closed: its tasks are gone with it
            with _lock:
                if _watchers.get(self.loop) is self:
                    del _watchers[self.loop]

    def _remove(self, subscription: Subscription) -> None:
        followers = self.subscriptions.get(subscription.job_id)
        if followers is not None:
            followers.discard(subscription)
            if not followers:
                del self.subscriptions[subscription.job_id]
        # Checked here, on the loop: a stream that joined since the close was asked keeps it.
        if not self.subscriptions:
            self.stop()

    def stop(self) -> None:
        """The last stream has gone: cancel the tasks. Only on the loop's thread."""
        with _lock:
            if _watchers.get(self.loop) is self:
                del _watchers[self.loop]
        for task in [self._task, *self._refreshes]:
            if task is not None and not task.done():
                task.cancel()
        self._task = None
        if settings.METRICS_TOKEN:  # the last stream closed: /metrics counts none of this process's
            report = self.loop.create_task(self._report(), context=Context())
            _final_reports.add(report)
            report.add_done_callback(_final_reports.discard)

    def subscription_count(self) -> int:
        return sum(len(s) for s in self.subscriptions.values())

    # changes
    def notice(self, job_id: str) -> None:
        """``job_id`` changed: read it once (again, if it changes while being read)."""
        if job_id not in self.subscriptions:
            return
        if job_id in self._refreshing:
            self._refreshing[job_id] = True
            return
        self._refreshing[job_id] = False
        task = self.loop.create_task(self._refresh(job_id), context=Context())
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh(self, job_id: str) -> None:
        try:
            while True:
                job = await _read_job(job_id)
                self.loads += 1
                change = Change(job)
                for subscription in list(self.subscriptions.get(job_id, ())):
                    subscription.deliver(change)
                if not self._refreshing.get(job_id):
                    return
                self._refreshing[job_id] = False
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("could not read job %s for its event streams", job_id, exc_info=True)
        finally:
            self._refreshing.pop(job_id, None)

    async def check(self) -> None:
        """One query for every watched job: notice those a stream has seen in another state."""
        job_ids = list(self.subscriptions)
        if not job_ids:
            return
        stamps = await _read_stamps(job_ids)
        self.checks += 1
        for job_id in job_ids:
            current = stamps.get(job_id)
            if any(s.stamp is not None and s.stamp != current for s in self.subscriptions.get(job_id, ())):
                self.notice(job_id)

    # the task
    async def _run(self) -> None:
        """Until ``stop()`` cancels it (the CancelledError goes on up, as asyncio expects)."""
        async with asyncio.TaskGroup() as group:
            if settings.METRICS_TOKEN:  # /metrics is on: it shows the open streams
                group.create_task(self._report_every(STREAMS_REPORT_EVERY))
            if self.backend == "poll":
                group.create_task(self._check_every(settings.FITTING_EVENTS_POLL))
            else:
                listen = self._listen_redis if self.backend == "redis" else self._listen_postgres
                group.create_task(self._check_every(settings.FITTING_EVENTS_RECHECK))
                group.create_task(self._listen_forever(listen))

    async def _report(self) -> None:
        """Report this process's open streams for /metrics (all loops of the process together)."""
        try:
            await _report_streams(open_stream_count())
        except Exception:
            logger.warning("event streams: the count could not be reported", exc_info=True)

    async def _report_every(self, interval: float) -> None:
        while True:
            await self._report()
            await asyncio.sleep(interval)

    async def _check_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:
                logger.warning("event streams: the check of watched jobs failed", exc_info=True)

    async def _listen_forever(self, listen) -> None:
        """Keep the notice connection up: reconnect after 1 s, doubling to 30 s while it fails.

        Meanwhile the periodic re-check still finds changes (late, not lost)."""
        delay = RECONNECT_DELAY
        while True:
            try:
                await listen()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("event streams: the %s notice connection failed", self.backend, exc_info=True)
            if self.listening.is_set():  # it had worked: a new failure starts from 1 s again
                delay = RECONNECT_DELAY
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _connected(self) -> None:
        """Listening now: anything that changed before the connection is found by one check.

        ``listening`` is set after that check, not before: a change made once it is set comes
        as a notice (or a later re-check), never by this first check."""
        await self.check()
        self.listening.set()

    async def _listen_redis(self) -> None:
        import redis.asyncio as aioredis

        # No socket timeout: a pub/sub connection waits for messages as long as it takes.
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(settings.FITTING_EVENTS_CHANNEL)
            await self._connected()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self.notices += 1
                    self.notice(message["data"].decode())
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _listen_postgres(self) -> None:
        import psycopg
        from psycopg import sql

        db = connections["default"].settings_dict
        params = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "connect_timeout": db.get("OPTIONS", {}).get("connect_timeout", 3),
        }
        conn = await psycopg.AsyncConnection.connect(
            autocommit=True, **{k: v for k, v in params.items() if v is not None}
        )
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(settings.FITTING_EVENTS_CHANNEL)))
            await self._connected()
            async for notify in conn.notifies():
                self.notices += 1
                self.notice(notify.payload)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
