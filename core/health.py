"""The health of what the service needs: the database and the queue's broker (GET /healthz).

Each probe runs in a thread of its own and is waited for at most ``HEALTHZ_TIMEOUT`` seconds
in all, so the answer comes in time even when a peer accepts connections and never answers
(drivers have connect timeouts, but not every wait they make is bounded). A probe still stuck
from an earlier request is waited for again rather than started twice: at most one thread
per probe, however long a peer hangs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from django.conf import settings
from django.db import connection, connections
from django_q.brokers import get_broker
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


def _ping_database() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True


def _ping_queue() -> bool:
    # queue_size() really reaches the broker (the ORM broker's ping() is always True).
    get_broker().queue_size()
    return True


PROBES: dict[str, Callable[[], bool]] = {"database": _ping_database, "queue": _ping_queue}

_in_flight: dict[str, Future] = {}
_lock = threading.Lock()


def _run(probe: Callable[[], bool], future: Future) -> None:
    try:
        future.set_result(probe())
    except Exception as exc:
        future.set_exception(exc)
    finally:
        connections.close_all()  # this thread's connections go back (to the pool, if any)


def _start(name: str) -> Future:
    with _lock:
        future = _in_flight.get(name)
        if future is None or future.done():
            future = _in_flight[name] = Future()
            # A daemon thread: one stuck on a silent peer never holds up the process's exit.
            threading.Thread(target=_run, args=(PROBES[name], future), name=f"healthz-{name}", daemon=True).start()
        return future


def health_check() -> dict[str, str]:
    """{"database": "ok"|"down", "queue": "ok"|"down"}, within HEALTHZ_TIMEOUT seconds."""
    futures = {name: _start(name) for name in PROBES}
    deadline = time.monotonic() + settings.HEALTHZ_TIMEOUT
    checks = {}
    for name, future in futures.items():
        try:
            healthy = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # the probe failed, or is still waiting on its peer
            healthy = False
        checks[name] = "ok" if healthy is not False else "down"
    return checks


PROBE_STATES = ("ok", "down")  # named once for the schema (SPECTACULAR_SETTINGS' ENUM_NAME_OVERRIDES)


class HealthSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    database = serializers.ChoiceField(choices=PROBE_STATES)
    queue = serializers.ChoiceField(choices=PROBE_STATES)


class HealthApi(APIView):
    """200 when the database and the queue answer, 503 otherwise (within HEALTHZ_TIMEOUT). No auth."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request):
        checks = health_check()
        healthy = all(value == "ok" for value in checks.values())
        return Response({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)
