"""GET /api/virtual-fitting/<id>/events: the job as a server-sent event stream.

In-process tests drive the async view through Django's AsyncClient (reading the stream as it
is produced) or the real ASGI application; the end-to-end test reads the stream from a real
uvicorn process while a real qcluster runs the job.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async
from django.db import connections
from django.db.backends.signals import connection_created
from django.test import AsyncClient
from PIL import Image
from rest_framework.test import APIClient

from fitting import events as event_stream
from fitting import watcher
from fitting.models import STEP_ORDER, FittingResult
from fitting.services.lifecycle import fitting_cancel
from fitting.services.progress import (
    fitting_claim,
    fitting_complete,
    fitting_fail,
    fitting_step_finished,
    fitting_step_started,
)
from tests.e2e import Stack, wait_until
from tests.factories import make_token, start_job
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db(transaction=True)


def events_url(job_id) -> str:
    return f"/api/virtual-fitting/{job_id}/events"


# --- reading a stream ---------------------------------------------------------------------
@dataclass
class Event:
    kind: str  # "job", "comment" or "retry"
    data: dict | None = None
    id: int | None = None
    comment: str = ""
    retry: int | None = None


def parse_block(block: str) -> Event:
    lines = [line for line in block.split("\n") if line]
    if all(line.startswith(":") for line in lines):
        return Event("comment", comment="\n".join(line[1:].strip() for line in lines))
    if len(lines) == 1 and lines[0].startswith("retry: "):
        return Event("retry", retry=int(lines[0].removeprefix("retry: ")))
    fields = dict(line.split(": ", 1) for line in lines)
    assert set(fields) == {"event", "data", "id"}, block
    return Event(fields["event"], data=json.loads(fields["data"]), id=int(fields["id"]))


def parse_body(body: str) -> list[Event]:
    assert body.endswith("\n\n"), body
    return [parse_block(block) for block in body[:-2].split("\n\n")]


class StreamReader:
    """Reads Django's async streaming response one SSE block at a time, as it is produced.

    The stream's first block, ``retry:``, is read by ``next`` and kept in ``retry``.
    """

    def __init__(self, response):
        self._response = response
        self._chunks = aiter(response.streaming_content)
        self._buffer = ""
        self.retry: int | None = None

    async def next(self, timeout: float = 30.0) -> Event | None:
        """The next event or comment; None when the stream has ended."""
        block = await self._next_block(timeout)
        if block is not None and block.kind == "retry":
            assert self.retry is None, "a second retry block"
            self.retry = block.retry
            block = await self._next_block(timeout)
        return block

    async def _next_block(self, timeout: float) -> Event | None:
        while "\n\n" not in self._buffer:
            try:
                chunk = await asyncio.wait_for(anext(self._chunks), timeout)
            except StopAsyncIteration:
                assert self._buffer == "", f"stream ended inside a block: {self._buffer!r}"
                return None
            self._buffer += chunk.decode()
        block, self._buffer = self._buffer.split("\n\n", 1)
        return parse_block(block)

    async def close(self) -> None:
        """Stop reading and close the response, as a server does when its client goes away."""
        await self._chunks.aclose()
        await sync_to_async(self._response.close)()


# --- jobs, moved on by the same services the pipeline uses --------------------------------


def claimed(job: FittingResult) -> FittingResult:
    assert fitting_claim(job_id=str(job.id), attempt=job.attempt)
    return FittingResult.objects.get(id=job.id)


def step_image(photo) -> Image.Image:
    return Image.new("RGB", (photo.width, photo.height), (90, 120, 200))


def detail_json(user, job) -> dict:
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(f"/api/virtual-fitting/{job.id}")
    assert response.status_code == 200
    return response.json()


def stamp(job: FittingResult) -> int:
    """The event id of the job's current state: its updated_at in microseconds."""
    return int(job.updated_at.timestamp() * 1_000_000)


def token_headers(user) -> dict:
    return {"Authorization": f"Token {make_token(user)}"}


@pytest.fixture
def job(user, photo, catalogue) -> FittingResult:
    return start_job(user, photo, catalogue["top"], catalogue["bottom"])


@pytest.fixture
def request_thread_connections():
    """Database connections opened off the test's thread, with persistent connections on.

    With CONN_MAX_AGE > 0 Django's end-of-request cleanup keeps connections open; one left
    in a finished request's thread would be leaked. The view must close its own.
    """
    opened = []
    main = threading.get_ident()

    def record(sender, connection, **kwargs):
        if threading.get_ident() != main:
            opened.append(connection)

    db_settings = connections.settings["default"]
    previous = db_settings["CONN_MAX_AGE"]
    db_settings["CONN_MAX_AGE"] = 600
    connection_created.connect(record)
    try:
        yield opened
    finally:
        connection_created.disconnect(record)
        db_settings["CONN_MAX_AGE"] = previous
        for wrapper in opened:
            wrapper.inc_thread_sharing()  # closed from this thread, whatever thread opened it
            wrapper.close()


@pytest.fixture
def fast_stream(settings):
    settings.FITTING_EVENTS_POLL = 0.02
    settings.FITTING_EVENTS_HEARTBEAT = 60


class StreamClock:
    """The stream's clock and its wait for a change: time moves only when the stream waits.

    Nothing changes: each wait times out, after ``timeout`` seconds or, if ``wake_every`` is
    set, after at most that long (a wake-up without news, as when a change renders the same).
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []
        self.wake_every: float | None = None

    def monotonic(self) -> float:
        return self.now

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        self.waits.append(timeout)
        self.now += timeout if self.wake_every is None else min(timeout, self.wake_every)
        await asyncio.sleep(0)  # still let the event loop run, as a real wait would
        return False


@pytest.fixture
def stream_clock(monkeypatch) -> StreamClock:
    clock = StreamClock()
    monkeypatch.setattr(event_stream, "_now", clock.monotonic)
    monkeypatch.setattr(event_stream, "_wait", clock.wait)
    return clock


# --- the stream ---------------------------------------------------------------------------
def test_stream_headers_and_first_event_is_the_job_as_the_api_shows_it(user, job, fast_stream):
    headers = token_headers(user)
    expected = detail_json(user, job)

    async def scenario():
        response = await AsyncClient().get(events_url(job.id), headers=headers)
        assert response.status_code == 200
        assert response["Content-Type"] == "text/event-stream"
        assert response["Cache-Control"] == "no-cache"
        assert response["X-Accel-Buffering"] == "no"
        reader = StreamReader(response)
        first = await reader.next()
        await reader.close()
        return first

    first = async_to_sync(scenario)()
    assert first.kind == "job"
    assert first.id == stamp(job)
    assert first.data == expected
    assert first.data["status"] == "processing"
    assert first.data["resultImageUrl"] is None


def test_each_change_is_an_event_and_the_stream_ends_after_the_terminal_one(user, photo, job, fast_stream):
    headers = token_headers(user)
    job = claimed(job)

    def start_top():
        fitting_step_started(job=job, step="top")

    def finish_top():
        return fitting_step_finished(job=job, step="top", image=step_image(photo), latency_ms=5, usage={})

    def finish_rest():
        fitting_step_started(job=job, step="bottom")
        last = fitting_step_finished(job=job, step="bottom", image=step_image(photo), latency_ms=5, usage={})
        fitting_complete(job=job, last_step_image=last, message="잘 어울려요 ✨", message_ms=3)

    async def scenario():
        response = await AsyncClient().get(events_url(job.id), headers=headers)
        reader = StreamReader(response)
        seen = [await reader.next()]
        for change in (start_top, finish_top):
            await sync_to_async(change)()
            seen.append(await reader.next())
        await sync_to_async(finish_rest)()  # three changes: seen one by one or together
        while seen[-1].data["status"] == "processing":
            seen.append(await reader.next())
        return seen, await reader.next()

    seen, end = async_to_sync(scenario)()
    first, top_started, top_finished, completed = seen[0], seen[1], seen[2], seen[-1]
    ids = [e.id for e in seen]
    assert ids == sorted(set(ids))  # increasing: the job's updated_at
    # (a later write that changes nothing shown sends no event, so the last id may be older)
    assert ids[0] < ids[-1] <= stamp(FittingResult.objects.get(id=job.id))
    assert first.data["currentStep"] is None
    assert top_started.data["currentStep"] == "top"
    assert [s["status"] for s in top_started.data["steps"]] == ["processing", "pending"]
    assert [s["status"] for s in top_finished.data["steps"]] == ["completed", "pending"]
    assert top_finished.data["steps"][0]["imageUrl"].startswith("http://testserver/media/results/")
    assert completed.data["status"] == "completed"
    assert completed.data["llmMessage"] == "잘 어울려요 ✨"
    assert completed.data["resultImageUrl"]
    assert completed.data == detail_json(user, job)
    assert end is None  # closed right after the terminal event


def test_a_failed_job_shows_the_failed_step_and_error_then_ends(user, job, fast_stream):
    headers = token_headers(user)
    job = claimed(job)

    async def scenario():
        response = await AsyncClient().get(events_url(job.id), headers=headers)
        reader = StreamReader(response)
        first = await reader.next()
        await sync_to_async(fitting_fail)(job=job, step="top", code="ENGINE_ERROR", message="engine said no")
        return first, await reader.next(), await reader.next()

    first, failed, end = async_to_sync(scenario)()
    assert first.data["status"] == "processing"
    assert failed.data["status"] == "failed"
    assert failed.data["failedStep"] == "top"
    assert failed.data["error"]["code"] == "ENGINE_ERROR"
    assert failed.data == detail_json(user, job)
    assert [s["status"] for s in failed.data["steps"]] == ["failed", "pending"]
    assert end is None


def test_a_canceled_job_is_the_last_event(user, job, fast_stream):
    headers = token_headers(user)
    job = claimed(job)
    fitting_step_started(job=job, step="top")

    async def scenario():
        response = await AsyncClient().get(events_url(job.id), headers=headers)
        reader = StreamReader(response)
        first = await reader.next()
        await sync_to_async(fitting_cancel)(job=job)
        return first, await reader.next(), await reader.next()

    first, canceled, end = async_to_sync(scenario)()
    assert first.data["currentStep"] == "top"
    assert canceled.data["status"] == "canceled"
    assert canceled.data["currentStep"] is None
    assert canceled.data == detail_json(user, job)
    assert end is None


def test_a_finished_job_is_one_event_and_the_end(user, job, fast_stream):
    headers = token_headers(user)
    fitting_fail(job=claimed(job), step="top", code="ENGINE_ERROR", message="no")

    async def scenario():
        response = await AsyncClient().get(events_url(job.id), headers=headers)
        reader = StreamReader(response)
        return await reader.next(), await reader.next()

    only, end = async_to_sync(scenario)()
    assert only.data["status"] == "failed"
    assert end is None


def test_heartbeat_while_nothing_changes_and_the_stream_gives_up_after_max_duration(
    user, job, settings, request_thread_connections, stream_clock
):
    """Through the real ASGI application (it buffers the body: the stream has to end by itself)."""
    from config.asgi import application

    settings.FITTING_EVENTS_HEARTBEAT = 4
    settings.FITTING_EVENTS_MAX_DURATION = 22
    headers = token_headers(user)
    started = stream_clock.now

    async def scenario():
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(events_url(job.id), headers=headers)

    # not async_to_sync: the view's reads get a thread per request; the timeout only guards a hang
    response = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events_seen = parse_body(response.text)
    assert events_seen[0].kind == "retry"
    assert events_seen[0].retry == 3000
    assert events_seen[1].kind == "job"
    assert events_seen[1].data["status"] == "processing"
    keepalives = events_seen[2:]
    assert all(e.kind == "comment" and e.comment == "keepalive" for e in keepalives)
    assert len(keepalives) == 5  # one every 4 s of 22: at 4, 8, 12, 16 and 20
    # It waited a heartbeat at a time and gave up once the maximum duration had passed, not before.
    assert stream_clock.waits == [4, 4, 4, 4, 4, 2]
    assert stream_clock.now - started == 22
    assert request_thread_connections, "the view never reached the database from its request thread"
    assert all(c.connection is None for c in request_thread_connections), "a connection was left open"


def test_no_heartbeat_before_it_is_due(user, job, settings, stream_clock):
    settings.FITTING_EVENTS_HEARTBEAT = 5
    stream_clock.wake_every = 1
    headers = token_headers(user)

    async def scenario():
        response = await AsyncClient().get(events_url(job.id), headers=headers)
        reader = StreamReader(response)
        await reader.next()
        started = stream_clock.now
        keepalive = await reader.next()
        waited = stream_clock.now - started
        await reader.close()
        return keepalive, waited

    keepalive, waited = async_to_sync(scenario)()
    assert keepalive.kind == "comment"
    assert keepalive.comment == "keepalive"
    assert waited == 5  # five wake-ups without news, then the keepalive, not one earlier
    assert stream_clock.waits == [5, 4, 3, 2, 1]


def test_session_auth(user, job, fast_stream):
    async def scenario():
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get(events_url(job.id))
        reader = StreamReader(response)
        first = await reader.next()
        await reader.close()
        return response.status_code, first

    status, first = async_to_sync(scenario)()
    assert status == 200
    assert first.data["jobId"] == str(job.id)


def get_sync(path, **kwargs):
    return async_to_sync(AsyncClient().get)(path, **kwargs)


def test_anonymous_is_401(job):
    assert_error(get_sync(events_url(job.id)), 401, "NOT_AUTHENTICATED", field=None)


def test_a_wrong_token_is_401_even_with_a_session(user, job):
    async def scenario():
        client = AsyncClient()
        await client.aforce_login(user)
        return await client.get(events_url(job.id), headers={"Authorization": "Token not-a-real-token"})

    response = async_to_sync(scenario)()
    assert_error(response, 401, "NOT_AUTHENTICATED", field=None)
    assert response["WWW-Authenticate"] == "Token"


def test_an_inactive_users_token_is_401(user, job):
    headers = token_headers(user)
    user.is_active = False
    user.save()
    assert_error(get_sync(events_url(job.id), headers=headers), 401, "NOT_AUTHENTICATED", field=None)


def test_another_users_job_is_404(other_user, job):
    assert_error(get_sync(events_url(job.id), headers=token_headers(other_user)), 404, "NOT_FOUND", field=None)


def test_an_unknown_job_is_404(user):
    assert_error(get_sync(events_url(uuid.uuid4()), headers=token_headers(user)), 404, "NOT_FOUND", field=None)


def test_post_is_405(user, job):
    response = async_to_sync(AsyncClient().post)(events_url(job.id), headers=token_headers(user))
    assert_error(response, 405, "METHOD_NOT_ALLOWED", field=None)


def test_a_client_that_goes_away_ends_the_stream_quietly_and_leaves_the_watcher(
    user, job, fast_stream, caplog, request_thread_connections
):
    """The ASGI server reports the disconnect: the stream is cancelled, its subscription and
    the user's slot are given back, the watcher (no stream left) stops, nothing is logged."""
    from config.asgi import application

    token = token_headers(user)["Authorization"]
    sent: list[dict] = []
    received: list[str] = []
    job_sent = asyncio.Event()
    while_open = {}

    async def receive():
        received.append("called")
        if len(received) == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await job_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and b"event: job" in message.get("body", b""):
            current = watcher.current_watcher()
            while_open.update(streams=watcher.open_stream_count(), subscribed=current.subscription_count())
            while_open["task"] = current._task
            job_sent.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": events_url(job.id),
        "raw_path": events_url(job.id).encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"testserver"), (b"authorization", token.encode())],
    }

    async def scenario():
        await asyncio.wait_for(application(scope, receive, send), timeout=60)  # a hang guard only

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())  # as under uvicorn: the view's reads run in a thread of the request
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body").decode()
    assert body.startswith("retry: 3000\n\nevent: job\n")
    assert while_open["streams"] == 1 and while_open["subscribed"] == 1
    assert watcher.open_stream_count() == 0  # the user's slot is back
    assert watcher._watchers == {}  # no watcher left behind, in any loop
    assert while_open["task"].done()  # its task ended with its last stream
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert request_thread_connections, "the view never reached the database from its request thread"
    assert all(c.connection is None for c in request_thread_connections), "a connection was left open"


def test_closing_the_response_gives_the_streams_slot_back(user, job, fast_stream):
    """As a server does, on a thread of its own, without closing the stream's iterator: Django
    calls the ``close()`` of a streaming response's content (what fitting/events.py relies on;
    a Django that stopped would keep the slot until the stream is collected)."""
    headers = token_headers(user)

    async def scenario():
        response = await AsyncClient().get(events_url(job.id), headers=headers)
        reader = StreamReader(response)
        await reader.next()
        during = watcher.open_stream_count()
        await sync_to_async(response.close)()
        after = watcher.open_stream_count()
        deadline = asyncio.get_running_loop().time() + 30  # a hang guard only
        while after == 0 and watcher.current_watcher() is not None:  # the thread handed it to the loop
            assert asyncio.get_running_loop().time() < deadline, "the watcher never stopped"
            await asyncio.sleep(0.01)
        return during, after

    during, after = async_to_sync(scenario)()
    assert during == 1
    assert after == 0


def test_the_request_thread_is_let_go_through_asgirefs_internals():
    """No public API lets a request's thread go while its stream waits: fitting/events.py reads
    asgiref's internals (asgiref is pinned). An asgiref that moves them fails here; the stream
    would still work, holding a thread per open stream."""

    async def scenario():
        async with ThreadSensitiveContext():  # as Django's ASGI handler does for each request
            first = await sync_to_async(threading.current_thread)()
            event_stream._release_request_thread()
            again = await sync_to_async(threading.current_thread)()
        return first, again

    first, again = asyncio.run(asyncio.wait_for(scenario(), 60))  # a hang guard only
    assert first is not threading.current_thread()
    assert again is not first  # the request's later sync work got a new thread
    first.join(timeout=60)
    assert not first.is_alive()  # and the one it had is gone


def test_the_stream_is_in_the_openapi_schema(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    get = schema["paths"]["/api/virtual-fitting/{job_id}/events"]["get"]
    stream = get["responses"]["200"]["content"]["text/event-stream"]
    assert stream["x-event-data"] == {"$ref": "#/components/schemas/Job"}
    assert "Job" in schema["components"]["schemas"]
    assert set(get["responses"]) == {"200", "401", "404", "429"}
    assert "THROTTLED" in get["responses"]["429"]["description"]
    assert {p["name"] for p in get["parameters"]} == {"job_id", "Last-Event-ID"}


# --- end to end: uvicorn + qcluster -------------------------------------------------------
def read_stream(client: httpx.Client, url: str, timeout: float = 120, events: list | None = None) -> list[Event]:
    """Every block of an SSE stream until the server closes it, appended to ``events`` as it comes."""
    events = [] if events is None else events
    lines = []
    deadline = time.monotonic() + timeout
    with client.stream("GET", url, timeout=httpx.Timeout(10, read=timeout)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            assert time.monotonic() < deadline, events
            if line:
                lines.append(line)
            elif lines:
                events.append(parse_block("\n".join(lines)))
                lines = []
    assert not lines
    return events


def progress(job: dict) -> tuple[int, int]:
    """How far a job is: finished steps, then the step in progress (terminal counts as beyond)."""
    finished = sum(step["status"] == "completed" for step in job["steps"])
    if job["status"] != "processing":
        return finished, len(STEP_ORDER)
    current = STEP_ORDER.index(job["currentStep"]) if job["currentStep"] else -1
    return finished, current


@pytest.mark.queue
def test_stream_from_uvicorn_follows_a_job_run_by_a_qcluster(tmp_path):
    stack = Stack(tmp_path).prepare()
    try:
        stack.start_web()
        stack.start_cluster()
        with stack.client() as client:
            job_id = stack.start_job(client)

            # A client that leaves mid-stream must not upset the server.
            with client.stream("GET", events_url(job_id)) as abandoned:
                assert next(abandoned.iter_lines()) == "retry: 3000"

            events = read_stream(client, events_url(job_id))
            final = client.get(f"/api/virtual-fitting/{job_id}").json()
    finally:
        stack.stop()

    jobs = [e.data for e in events if e.kind == "job"]
    ids = [e.id for e in events if e.kind == "job"]
    assert ids == sorted(set(ids))
    assert jobs[0]["status"] == "processing"
    assert [progress(j) for j in jobs] == sorted(progress(j) for j in jobs)
    assert all(a != b for a, b in itertools.pairwise(jobs)), "an event without a change"
    last = jobs[-1]
    assert last == final
    assert last["status"] == "completed"
    assert [(s["category"], s["status"]) for s in last["steps"]] == [
        ("top", "completed"),
        ("bottom", "completed"),
        ("outer", "completed"),
    ]
    assert all(s["imageUrl"] for s in last["steps"]) and last["resultImageUrl"] and last["llmMessage"]
    seen_steps = [j["currentStep"] for j in jobs if j["currentStep"]]
    assert seen_steps == sorted(seen_steps, key=STEP_ORDER.index)
    log = stack.output("web", tail=None)
    assert "Traceback" not in log and "ERROR" not in log, log


@pytest.mark.queue
def test_every_step_arrives_live_with_its_image(tmp_path):
    """The fake Gemini holds each call until the stream has shown the job up to that call."""
    from fitting.prompts import step_prompt
    from tests.fakegemini import FakeGemini

    seen: list[Event] = []  # the stream's blocks, as they arrive

    def shown(predicate, what: str) -> None:
        wait_until(lambda: any(e.kind == "job" and predicate(e.data) for e in list(seen)), 60, what)

    def hold_until_shown(request) -> None:  # in the fake's thread, before it answers
        if request.wants_image:
            category = next(c for c in STEP_ORDER if request.texts == [step_prompt(c)])
            shown(lambda job: job["currentStep"] == category, f"{category} shown running")
        else:  # the message comes last: the last step's image must be seen before the job ends
            shown(lambda job: job["steps"][-1]["imageUrl"], "the last step's image")

    fake = FakeGemini().start()
    fake.on_request = hold_until_shown
    stack = Stack(
        tmp_path,
        FITTING_ENGINE="gemini",
        GEMINI_API_KEY="test-key",
        GEMINI_BASE_URL=fake.base_url,
        FITTING_EVENTS_POLL="0.1",
    ).prepare()
    try:
        stack.start_web()
        stack.start_cluster()
        with stack.client() as client, stack.client() as streaming, ThreadPoolExecutor(1) as pool:
            job_id = stack.start_job(client)
            reading = pool.submit(read_stream, streaming, events_url(job_id), events=seen)
            reading.result(timeout=180)
    finally:
        stack.stop()
        fake.stop()
    assert not fake.errors, fake.errors  # a call the stream did not show in time
    events = [e.data for e in seen if e.kind == "job"]
    # Each step was seen running, then seen finished with its image, before the job ended.
    running = [j["currentStep"] for j in events if j["currentStep"]]
    assert list(dict.fromkeys(running)) == ["top", "bottom", "outer"]
    for k, category in enumerate(["top", "bottom", "outer"]):
        arrived = next(i for i, j in enumerate(events) if j["steps"][k]["imageUrl"])
        assert events[arrived]["status"] == "processing", f"{category} only seen at the end"
    assert events[-1]["status"] == "completed"
