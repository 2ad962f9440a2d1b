"""GET /api/virtual-fitting/<job_id>/events: the job as a server-sent event stream.

A plain async Django view (DRF views are synchronous): one ``job`` event with the job's JSON
at once, the same JSON as ``GET /api/virtual-fitting/<job_id>``, then one event each time the
job changes, found by polling the database. The stream ends right after an event with a
terminal status, or after ``FITTING_EVENTS_MAX_DURATION`` seconds; while nothing changes a
comment line keeps proxies from closing an idle connection.

Settings (seconds, from the environment): ``FITTING_EVENTS_POLL`` (0.5),
``FITTING_EVENTS_HEARTBEAT`` (15), ``FITTING_EVENTS_MAX_DURATION`` (``FITTING_JOB_TIMEOUT`` + 120).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer

from core.auth import request_user
from core.errors import ErrorCode
from core.exceptions import error_body
from fitting.apis import JobOutputSerializer
from fitting.models import TERMINAL_STATUSES, FittingResult
from fitting.selectors import fitting_get

logger = logging.getLogger(__name__)

T = TypeVar("T")
# (updated_at, the job's JSON, whether its status is terminal)
Snapshot = tuple[datetime, str, bool]

# The stream's clock and its wait between polls: tests replace them to drive its timing.
_now = time.monotonic
_sleep = asyncio.sleep


async def job_events(request: HttpRequest, job_id: UUID) -> HttpResponse:
    if request.method != "GET":
        response = _error(405, ErrorCode.METHOD_NOT_ALLOWED, _('Method "%s" not allowed.') % request.method)
        response["Allow"] = "GET"
        return response
    user, failure = await _authenticate(request)
    if failure:
        return failure
    first = await _snapshot(user=user, job_id=job_id, request=request)
    if first is None:
        return _error(404, ErrorCode.NOT_FOUND, str(exceptions.NotFound.default_detail))
    response = StreamingHttpResponse(
        _stream(request=request, user=user, job_id=job_id, first=first),
        content_type="text/event-stream",
    )
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


# --- database reads, each on a connection of its own ---------------------------------------
def _closing_connections(func: Callable[..., T]) -> Callable[..., T]:
    """Run a read, then close this thread's connections.

    A stream lives for minutes in a per-request thread and may be abandoned at any await
    (client gone); holding a connection between polls would keep it open for the stream's
    whole life and leak it when the stream is dropped rather than closed.
    """

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
def _snapshot(*, user: AbstractBaseUser, job_id: UUID, request: HttpRequest) -> Snapshot | None:
    """The job as the stream sends it, or None if the user has no such job."""
    job = fitting_get(user=user, job_id=job_id)
    if job is None:
        return None
    data = JSONRenderer().render(JobOutputSerializer(job, context={"request": request}).data).decode()
    return job.updated_at, data, job.status in TERMINAL_STATUSES


@sync_to_async
@_closing_connections
def _updated_at(*, user: AbstractBaseUser, job_id: UUID) -> datetime | None:
    """The cheap check made at every poll: every write to a job moves its updated_at."""
    return FittingResult.objects.filter(owner=user, id=job_id).values_list("updated_at", flat=True).first()


# --- the stream ---------------------------------------------------------------------------
def _event(data: str, event_id: int) -> str:
    return f"event: job\ndata: {data}\nid: {event_id}\n\n"


async def _stream(*, request: HttpRequest, user: AbstractBaseUser, job_id: UUID, first: Snapshot) -> AsyncIterator[str]:
    poll = settings.FITTING_EVENTS_POLL
    heartbeat = settings.FITTING_EVENTS_HEARTBEAT
    max_duration = settings.FITTING_EVENTS_MAX_DURATION
    give_up_at = _now() + max_duration

    stamp, data, terminal = first
    event_id = 1
    yield _event(data, event_id)
    last_sent = _now()
    # A client that goes away cancels this generator at an await (CancelledError) or closes
    # it at a yield (GeneratorExit); both simply end it: no connection is held in between.
    while not terminal and _now() < give_up_at:
        await _sleep(poll)
        current = await _updated_at(user=user, job_id=job_id)
        if current is None:  # deleted under us
            return
        if current != stamp:
            snapshot = await _snapshot(user=user, job_id=job_id, request=request)
            if snapshot is None:
                return
            stamp, new_data, terminal = snapshot
            if new_data != data:
                data = new_data
                event_id += 1
                yield _event(data, event_id)
                last_sent = _now()
                continue
        if _now() - last_sent >= heartbeat:
            yield ": keepalive\n\n"
            last_sent = _now()
