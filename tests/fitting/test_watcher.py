"""The event streams' one watcher per process, on each of its backends.

``poll`` (one batched query per interval) runs everywhere; ``postgres`` (LISTEN/NOTIFY) only
when the tests run on PostgreSQL; ``redis`` (pub/sub) when Redis answers: on ``REDIS_URL``
if set (the CI's Redis stage, ``-m queue``), else on 127.0.0.1:6379. Each test has a channel
of its own (pub/sub channels are not per Redis database). With a notice backend the
periodic re-check is put off for an hour: a change then reaches the streams by its notice
or not at all.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from django.test import AsyncClient
from django.utils import timezone

from fitting import watcher
from fitting.models import FittingResult, StreamCount
from fitting.services.erasure import fitting_delete
from fitting.services.progress import fitting_step_started
from tests.factories import make_photo, start_job
from tests.fitting.test_events import StreamReader, claimed, detail_json, events_url, stamp, token_headers
from tests.fitting.test_metrics import TOKEN, scrape

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL_REDIS = "redis://127.0.0.1:6379/13"


def redis_url() -> str | None:
    url = os.environ.get("REDIS_URL") or LOCAL_REDIS
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception:
        return None
    return url


@pytest.fixture(
    params=[
        "poll",
        pytest.param("postgres", marks=pytest.mark.queue),
        pytest.param("redis", marks=pytest.mark.queue),
    ]
)
def backend(request, settings) -> str:
    name = request.param
    if name == "postgres" and connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY: the tests run on PostgreSQL (DATABASE_URL=postgres://…)")
    if name == "redis":
        url = redis_url()
        if url is None:
            pytest.skip("Redis does not answer")
        settings.REDIS_URL = url
    settings.FITTING_EVENTS_BACKEND = name
    settings.FITTING_EVENTS_CHANNEL = f"test_events_{uuid.uuid4().hex}"
    settings.FITTING_EVENTS_POLL = 0.02
    settings.FITTING_EVENTS_RECHECK = 3600
    settings.FITTING_EVENTS_HEARTBEAT = 60
    return name


@pytest.fixture
def job(user, photo, catalogue) -> FittingResult:
    return claimed(start_job(user, photo, catalogue["top"], catalogue["bottom"]))


async def until(predicate, timeout: float = 30.0) -> None:
    """Wait for a condition of this process (a hang guard, not a timing window)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def open_reader(job_id, headers: dict, **extra) -> StreamReader:
    response = await AsyncClient().get(events_url(job_id), headers={**headers, **extra})
    assert response.status_code == 200, response.content
    return StreamReader(response)


def stream_scope(job, token: bytes) -> dict:
    """The ASGI scope of a GET of ``job``'s event stream, for driving the app without a server."""
    path = events_url(job.id)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"testserver"), (b"authorization", token)],
    }


async def listening(backend: str) -> None:
    """With a notice backend, the watcher's connection is up: a change now comes as a notice."""
    if backend != "poll":
        await until(watcher.current_watcher().listening.is_set)


def test_one_change_reaches_every_stream_with_one_read_of_the_job(backend, settings, user, job):
    streams = 20
    settings.FITTING_EVENTS_PER_USER = 0  # no cap
    headers = token_headers(user)

    async def scenario():
        readers = [await open_reader(job.id, headers) for _ in range(streams)]
        firsts = [await reader.next() for reader in readers]
        current = watcher.current_watcher()
        assert current.subscription_count() == streams
        await listening(backend)
        loads_before = current.loads
        await sync_to_async(fitting_step_started)(job=job, step="top")
        changed = [await reader.next() for reader in readers]
        loads = current.loads - loads_before
        notices = current.notices
        for reader in readers:
            await reader.close()
        return firsts, changed, loads, notices

    firsts, changed, loads, notices = async_to_sync(scenario)()
    assert all(e.data["currentStep"] is None for e in firsts)
    assert {e.data["currentStep"] for e in changed} == {"top"}
    assert all(e.data == changed[0].data for e in changed)
    assert changed[0].data == detail_json(user, job)
    assert loads == 1  # one read of the job for all 20 streams, not 20
    if backend != "poll":
        assert notices >= 1  # it came as a notice (the re-check is an hour away)


def test_a_stream_of_a_deleted_job_ends(backend, user, job):
    headers = token_headers(user)

    async def scenario():
        reader = await open_reader(job.id, headers)
        first = await reader.next()
        await listening(backend)
        await sync_to_async(fitting_delete)(job=job)
        return first, await reader.next()

    first, end = async_to_sync(scenario)()
    assert first.kind == "job"
    assert end is None


def test_the_eleventh_stream_of_a_user_is_429_until_one_closes(backend, user, other_user, job, photo, catalogue):
    headers = token_headers(user)
    others_job = start_job(other_user, make_photo(other_user), catalogue["top"])
    others_headers = token_headers(other_user)

    async def scenario():
        readers = [await open_reader(job.id, headers) for _ in range(10)]
        for reader in readers:
            await reader.next()
        refused = await AsyncClient().get(events_url(job.id), headers={**headers, "Accept-Language": "en"})
        # Another user is not held back by this one's streams.
        someone_else = await open_reader(others_job.id, others_headers)
        await someone_else.next()
        count_while_full = watcher.open_stream_count()
        await readers[0].close()
        await until(lambda: watcher.open_stream_count() == 10)
        admitted = await open_reader(job.id, headers)
        first = await admitted.next()
        for reader in [*readers[1:], admitted, someone_else]:
            await reader.close()
        await until(lambda: watcher.open_stream_count() == 0)
        return refused, count_while_full, first

    refused, count_while_full, first = async_to_sync(scenario)()
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/json"
    assert refused["Retry-After"] == "3"
    error = refused.json()["error"]
    assert error["code"] == "THROTTLED"
    assert error["field"] is None
    assert "at most 10" in error["message"]
    assert count_while_full == 11
    assert first.data["jobId"] == str(job.id)


def test_a_reconnecting_client_gets_the_current_state_at_once(backend, user, job):
    """With Last-Event-ID the stream starts with the job as it is now: no replay, no wait."""
    headers = token_headers(user)

    async def scenario():
        reader = await open_reader(job.id, headers)
        seen = await reader.next()
        await reader.close()
        # Meanwhile the job moves on; the client comes back with the last id it saw.
        await sync_to_async(fitting_step_started)(job=job, step="top")
        again = await open_reader(job.id, headers, **{"Last-Event-ID": str(seen.id)})
        resumed = await again.next()
        retry = again.retry
        await again.close()
        return seen, resumed, retry

    seen, resumed, retry = async_to_sync(scenario)()
    current = FittingResult.objects.get(id=job.id)
    assert retry == 3000
    assert seen.data["currentStep"] is None
    assert resumed.kind == "job"
    assert resumed.data["currentStep"] == "top"
    assert resumed.data == detail_json(user, job)
    assert resumed.id == stamp(current) > seen.id


def test_a_disconnected_stream_leaves_no_subscription_behind(backend, user, job):
    """Through the ASGI application, as under uvicorn: the client goes away mid-stream."""
    from config.asgi import application

    token = token_headers(user)["Authorization"].encode()
    first_event = asyncio.Event()
    while_open: dict = {}

    async def receive():
        if not while_open.get("requested"):
            while_open["requested"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await first_event.wait()
        await listening(backend)
        return {"type": "http.disconnect"}

    async def send(message):
        if b"event: job" in message.get("body", b""):
            current = watcher.current_watcher()
            while_open.update(streams=watcher.open_stream_count(), subscribed=current.subscription_count())
            while_open["task"] = current._task
            first_event.set()

    scope = stream_scope(job, token)
    asyncio.run(asyncio.wait_for(application(scope, receive, send), timeout=60))  # a hang guard only
    assert while_open["streams"] == 1 and while_open["subscribed"] == 1
    assert watcher.open_stream_count() == 0
    assert watcher._watchers == {}
    assert while_open["task"].done()  # the watcher's task and its connection are gone


def test_of_many_watched_jobs_only_the_changed_one_is_read(settings, user, photo, catalogue):
    """The poll backend: one query for every watched job's updated_at, then a read of the changed one."""
    settings.FITTING_EVENTS_BACKEND = "poll"
    settings.FITTING_EVENTS_POLL = 0.02
    settings.FITTING_EVENTS_HEARTBEAT = 60
    jobs = [claimed(start_job(user, photo, catalogue["top"])) for _ in range(3)]
    headers = token_headers(user)

    async def scenario():
        readers = [await open_reader(j.id, headers) for j in jobs]
        for reader in readers:
            await reader.next()
        current = watcher.current_watcher()
        await sync_to_async(fitting_step_started)(job=jobs[1], step="top")
        changed = await readers[1].next()
        checks, loads = current.checks, current.loads
        for reader in readers:
            await reader.close()
        return changed, checks, loads

    changed, checks, loads = async_to_sync(scenario)()
    assert changed.data["jobId"] == str(jobs[1].id)
    assert changed.data["currentStep"] == "top"
    assert loads == 1  # only the changed job was read
    assert checks >= 1


def test_open_streams_hold_no_thread_while_they_wait(settings, user, job):
    """Through the ASGI application, as under uvicorn: 20 idle streams, not 20 idle threads.

    Django runs each request's sync parts on a thread of the request's own, kept until the
    response ends; the stream lets it go once it has started.
    """
    import threading

    from config.asgi import application

    settings.FITTING_EVENTS_BACKEND = "poll"
    settings.FITTING_EVENTS_HEARTBEAT = 60
    streams = 20
    settings.FITTING_EVENTS_PER_USER = streams
    token = token_headers(user)["Authorization"].encode()
    scope = stream_scope(job, token)
    threads_before = threading.active_count()
    observed = {}

    async def scenario():
        leave = asyncio.Event()
        started = []

        def client():
            requested = []

            async def receive():
                if not requested:
                    requested.append(True)
                    return {"type": "http.request", "body": b"", "more_body": False}
                await leave.wait()
                return {"type": "http.disconnect"}

            async def send(message):
                if b"event: job" in message.get("body", b""):
                    started.append(True)

            return application(dict(scope), receive, send)

        requests = [asyncio.ensure_future(client()) for _ in range(streams)]
        await until(lambda: len(started) == streams)
        # The loop's default executor (the watcher's reads) has a few threads at most.
        bound = threads_before + min(32, (os.cpu_count() or 1) + 4) + 1
        await until(lambda: threading.active_count() <= bound)
        observed.update(threads=threading.active_count(), bound=bound, open=watcher.open_stream_count())
        leave.set()
        await asyncio.wait_for(asyncio.gather(*requests), 60)

    asyncio.run(scenario())
    assert observed["open"] == streams
    assert observed["threads"] <= observed["bound"] < threads_before + streams
    assert watcher.open_stream_count() == 0


def test_a_lost_notice_is_made_up_for_by_the_periodic_recheck(backend, settings, user, job):
    if backend == "poll":
        pytest.skip("the poll backend has no notices to lose")
    settings.FITTING_EVENTS_RECHECK = 0.2
    headers = token_headers(user)

    async def scenario():
        reader = await open_reader(job.id, headers)
        await reader.next()
        current = watcher.current_watcher()
        await listening(backend)
        settings.FITTING_EVENTS_CHANNEL = f"nobody_listens_{uuid.uuid4().hex}"  # the notice goes astray
        await sync_to_async(fitting_step_started)(job=job, step="top")
        changed = await reader.next()
        notices, checks = current.notices, current.checks
        await reader.close()
        return changed, notices, checks

    changed, notices, checks = async_to_sync(scenario)()
    assert changed.data["currentStep"] == "top"
    assert notices == 0  # not by a notice
    assert checks >= 2  # the check on connecting, then a re-check that found the change


def test_metrics_count_the_open_streams_of_every_web_process(settings, client, user, job):
    """Each process's watcher reports its streams; /metrics sums the fresh reports of all processes."""
    settings.METRICS_TOKEN = TOKEN
    now = timezone.now()
    StreamCount.objects.create(process="web-2:17", open_streams=5, updated_at=now)  # another process
    StreamCount.objects.create(process="web-3:9", open_streams=7, updated_at=now - timedelta(hours=1))  # died
    headers = token_headers(user)
    mine = StreamCount.objects.filter(process__endswith=f":{os.getpid()}")

    async def reported(count: int) -> None:
        deadline = asyncio.get_running_loop().time() + 30
        while not await sync_to_async(mine.filter(open_streams=count).exists)():
            assert asyncio.get_running_loop().time() < deadline, f"{count} streams never reported"
            await asyncio.sleep(0.05)

    async def scenario():
        readers = [await open_reader(job.id, headers) for _ in range(3)]
        for reader in readers:
            await reader.next()
        await reported(3)
        during = await sync_to_async(scrape)(client)
        for reader in readers:
            await reader.close()
        await reported(0)
        return during

    during = async_to_sync(scenario)()
    assert during["fitting_event_streams_open"] == {(): 3 + 5}  # this process and the fresh other one
    assert scrape(client)["fitting_event_streams_open"] == {(): 5}  # ours closed; the dead one never counts


@pytest.mark.timeout(120)  # before the fix this hung: the watcher's cancellation was never delivered
def test_a_stream_opened_and_closed_in_asyncio_debug_mode_stops_the_watcher(backend, user, job):
    """Closing the response runs on another thread (Django's resource closers, through
    ``sync_to_async``): the watcher must still change only on its own loop, which asyncio's
    debug mode enforces."""
    headers = token_headers(user)
    observed = {}

    async def scenario():
        reader = await open_reader(job.id, headers)
        await reader.next()
        observed["task"] = watcher.current_watcher()._task
        await listening(backend)
        await reader.close()
        await until(lambda: watcher.current_watcher() is None)
        await until(observed["task"].done)

    asyncio.run(scenario(), debug=True)
    assert observed["task"].cancelled()
    assert watcher.open_stream_count() == 0
    assert watcher._watchers == {}


@pytest.mark.timeout(180)  # before the fix this hung, or logged "Task was destroyed but it is pending!"
def test_200_streams_opened_and_closed_at_once_log_no_error(backend, settings, user, job, caplog):
    """Each closed by the client, its response closed on another thread, while others open:
    in asyncio's debug mode, so a change to the watcher off its loop's thread fails loudly."""
    settings.FITTING_EVENTS_PER_USER = 0  # no cap
    headers = token_headers(user)
    streams = 200

    async def open_and_close() -> None:
        reader = await open_reader(job.id, headers)
        await reader.next()
        await reader.close()

    async def scenario():
        await asyncio.gather(*(open_and_close() for _ in range(streams)))
        await until(lambda: watcher.current_watcher() is None)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario(), debug=True)
        gc.collect()  # a task or generator dropped while pending says so when it is collected
    assert watcher.open_stream_count() == 0
    assert watcher._watchers == {}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, caplog.text
