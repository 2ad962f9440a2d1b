"""GET /api/virtual-fitting/<job_id>/events: the job as a server-sent event stream.

A plain async Django view (DRF views are synchronous), async end to end: no thread is held
while a stream waits. It sends ``retry:`` (how long a browser waits before reconnecting),
then one ``job`` event with the job's JSON at once, the same JSON as ``GET
/api/virtual-fitting/<job_id>``, then one event each time the job changes. Changes come
from the process's one watcher (fitting/watcher.py), which reads a changed job once for all
the streams that follow it. Each event's ``id`` is the job's ``updated_at`` in microseconds;
a client that reconnects (with ``Last-Event-ID`` or not) gets the current state at once, not
a replay. The stream ends right after an event with a terminal status, when the job is
deleted, or after ``FITTING_EVENTS_MAX_DURATION`` seconds; while nothing changes a comment
line every ``FITTING_EVENTS_HEARTBEAT`` seconds keeps proxies from closing an idle
connection. A user holds at most ``FITTING_EVENTS_PER_USER`` streams in one web process:
one more is refused with 429 THROTTLED.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar
from uuid import UUID

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import translation
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer

from core.auth import request_user
from core.errors import ErrorCode
from core.exceptions import error_body
from fitting import watcher
from fitting.models import FittingResult, Status
from fitting.selectors import fitting_get
from fitting.serializers import JobOutputSerializer

logger = logging.getLogger(__name__)

T = TypeVar("T")


# The stream's clock and its wait for a change: tests replace them to drive its timing.
_now = time.monotonic


async def _wait(changed: asyncio.Future, timeout: float) -> bool:
    """Whether ``changed`` was done within ``timeout`` seconds.

    One timer handle per wait and nothing else: no task (``wait_for`` on 3.11), no
    ``asyncio.timeout`` object; at thousands of streams per change each object per wait counts."""
    if changed.done():
        return True
    timer = asyncio.get_running_loop().call_later(timeout, _time_up, changed)
    try:
        return await changed
    finally:
        timer.cancel()


def _time_up(changed: asyncio.Future) -> None:
    if not changed.done():
        changed.set_result(False)


async def job_events(request: HttpRequest, job_id: UUID) -> HttpResponse:
    if request.method != "GET":
        response = _error(405, ErrorCode.METHOD_NOT_ALLOWED, _('Method "%s" not allowed.') % request.method)
        response["Allow"] = "GET"
        return response
    user, failure = await _authenticate(request)
    if failure:
        return failure
    # Follow the job before reading it: a change after the read is then never missed.
    try:
        subscription = watcher.open_stream(user_id=user.pk, job_id=str(job_id))
    except watcher.TooManyStreams:
        response = _error(
            429,
            ErrorCode.THROTTLED,
            _("Too many open event streams (at most %(count)d). Close one and try again.")
            % {"count": settings.FITTING_EVENTS_PER_USER},
        )
        response["Retry-After"] = str(max(1, settings.FITTING_EVENTS_RETRY_MS // 1000))
        return response
    try:
        job = await _read_job(user=user, job_id=job_id)
    except BaseException:
        subscription.close()
        raise
    if job is None:
        subscription.close()
        return _error(404, ErrorCode.NOT_FOUND, str(exceptions.NotFound.default_detail))
    subscription.seen(job.updated_at)
    stream = _stream(request=request, job=job, subscription=subscription)
    # The stream gives its slot and subscription back in its ``finally`` (the client gone:
    # cancelled at an await), when the response is closed (a server or the test client that
    # stops reading; on any thread), or, dropped before its first chunk, when it is collected.
    response = StreamingHttpResponse(_Content(stream, subscription), content_type="text/event-stream")
    weakref.finalize(stream, subscription.close)
    response["Cache-Control"] = "no-cache"
    # nginx and friends would otherwise hold events back in their buffers.
    response["X-Accel-Buffering"] = "no"
    return response


# --- authentication: DRF's token, else the session, as the REST API does ------------------
async def _authenticate(request: HttpRequest) -> tuple[AbstractBaseUser | None, HttpResponse | None]:
    try:
        user = await _request_user(request)
    except exceptions.AuthenticationFailed as exc:
        return None, _not_authenticated(str(exc.detail))
    if not user.is_authenticated:
        return None, _not_authenticated(str(exceptions.NotAuthenticated.default_detail))
    return user, None


def _not_authenticated(message: str) -> JsonResponse:
    response = _error(401, ErrorCode.NOT_AUTHENTICATED, message)
    response["WWW-Authenticate"] = "Token"
    return response


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status, json_dumps_params={"ensure_ascii": False})


# --- database reads: the request's own two, each closing its connections after ---------------
def _closing_connections(func: Callable[..., T]) -> Callable[..., T]:
    """Run a read, then close this thread's connections (none is held while a stream waits)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return wrapper


@sync_to_async
@_closing_connections
def _request_user(request: HttpRequest):
    return request_user(request)


@sync_to_async
@_closing_connections
def _read_job(*, user: AbstractBaseUser, job_id: UUID) -> FittingResult | None:
    """The user's job with what the API shows prefetched, or None if the user has no such job."""
    return fitting_get(user=user, job_id=job_id)


# --- the stream ---------------------------------------------------------------------------
class _Content:
    """The stream as a response's content, with a ``close()``: Django calls the ``close()`` of
    a streaming response's content when it closes the response, as a WSGI server does an
    iterable's (pinned by ``test_closing_the_response_gives_the_streams_slot_back``). Django
    closes it on a thread of its own; ``Subscription.close`` is safe there."""

    def __init__(self, events: AsyncIterator[str], subscription: watcher.Subscription) -> None:
        self._events = events
        self._subscription = subscription

    def __aiter__(self) -> AsyncIterator[str]:
        return self._events

    def close(self) -> None:
        self._subscription.close()


def _release_request_thread() -> None:
    """Let the request's thread go while the stream waits: no thread per open stream.

    Under ASGI, Django runs a request's synchronous parts (sync middleware, the reads above)
    on a thread of the request's own (asgiref's ThreadSensitiveContext), kept until the
    response ends: for a stream, minutes. Once the stream has started nothing of the request
    needs that thread: its executor is shut down now, which ends the idle thread. A later
    thread-sensitive call of the request (Django closing the response) gets a new one.

    No public API lets the thread go: this reads two class attributes of asgiref's
    ``SyncToAsync`` (asgiref is pinned in requirements.txt). Should an upgrade move them, the
    thread is kept until the response ends (the stream still works) and
    ``test_the_request_thread_is_let_go_through_asgirefs_internals`` fails.
    """
    context_var = getattr(SyncToAsync, "thread_sensitive_context", None)
    executors = getattr(SyncToAsync, "context_to_thread_executor", None)
    if context_var is None or executors is None:
        return
    context = context_var.get(None)
    if context is None:
        return
    executor = executors.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)


def _render(job: FittingResult, request: HttpRequest) -> str:
    """The job's JSON as the API shows it; no database access (the job comes prefetched)."""
    return JSONRenderer().render(JobOutputSerializer(job, context={"request": request}).data).decode()


def _render_key(request: HttpRequest) -> tuple:
    """What the rendering depends on besides the job: absolute URLs and the message's language."""
    return request.scheme, request.get_host(), translation.get_language()


def _rendered_event(job: FittingResult, request: HttpRequest) -> tuple[str, bytes]:
    """The job's JSON, and the whole event as sent."""
    data = _render(job, request)
    return data, _event(data, job).encode()


def _event(data: str, job: FittingResult) -> str:
    event_id = int(job.updated_at.timestamp() * 1_000_000)
    return f"event: job\ndata: {data}\nid: {event_id}\n\n"


async def _stream(
    *, request: HttpRequest, job: FittingResult, subscription: watcher.Subscription
) -> AsyncIterator[str]:
    heartbeat = settings.FITTING_EVENTS_HEARTBEAT
    give_up_at = _now() + settings.FITTING_EVENTS_MAX_DURATION
    key = _render_key(request)
    render = functools.partial(_rendered_event, request=request)
    # A client that goes away cancels this generator at an await (CancelledError) or closes
    # it at a yield (GeneratorExit): either way ``finally`` leaves the watcher.
    try:
        yield f"retry: {settings.FITTING_EVENTS_RETRY_MS}\n\n"
        data = _render(job, request)
        yield _event(data, job)
        _release_request_thread()
        terminal = job.status in Status.terminal()
        job = None  # not kept for the stream's life: later states come from the watcher
        last_sent = _now()
        while not terminal:
            now = _now()
            if now >= give_up_at:
                return
            if not await _wait(subscription.changed(), min(heartbeat - (now - last_sent), give_up_at - now)):
                if _now() - last_sent >= heartbeat:
                    yield ": keepalive\n\n"
                    last_sent = _now()
                continue
            change = subscription.take()
            if change is None:
                continue
            if change.job is None:  # deleted under us
                return
            # Rendered and encoded once per change for all streams with the same key.
            new_data, encoded = change.rendered(key, render)
            terminal = change.job.status in Status.terminal()
            if new_data != data:
                data = new_data
                yield encoded
                last_sent = _now()
    finally:
        subscription.close()
