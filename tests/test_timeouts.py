"""A database or broker that is down or never answers costs seconds, not minutes, and
/healthz says which one within HEALTHZ_TIMEOUT (3 s).

The hard case is a "tarpit": a TCP peer that accepts connections and then stays silent (a
hung server, a black-holed network). Each test points a real process of the app at one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.e2e import ROOT
from tests.servers import tarpit, uvicorn_server

# dbagnostic: each test names its own database (a tarpit, or a SQLite file), never the stage's.
pytestmark = pytest.mark.dbagnostic

# Well above the 3-5 s the timeouts give, well below the 20 s (or forever) they replaced.
BOUND = 10


def tarpit_urls(port: int) -> dict[str, str]:
    return {
        "database": f"postgres://fitting@127.0.0.1:{port}/fitting",
        "redis": f"redis://127.0.0.1:{port}/0",
    }


@pytest.mark.parametrize(
    ("what", "code"),
    [
        ("database", "from django.db import connection\nconnection.ensure_connection()"),
        ("redis", "from django_q.brokers import get_broker\nget_broker().queue_size()"),
        ("redis", "from django.core.cache import cache\ncache.get('anything')"),
    ],
    ids=["database", "broker", "cache"],
)
def test_a_silent_peer_fails_an_operation_in_seconds(tmp_path, what, code):
    with tarpit() as port:
        url = tarpit_urls(port)[what]
        environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        environment.update(
            DJANGO_SETTINGS_MODULE="config.settings.local",
            DATABASE_URL=url if what == "database" else f"sqlite:///{tmp_path / 'db.sqlite3'}",
            **({"REDIS_URL": url} if what == "redis" else {}),
        )
        program = (
            "import time\nstart = time.monotonic()\ntry:\n"
            + "".join(f"    {line}\n" for line in code.splitlines())
            + "except Exception as exc:\n    print('FAILED', type(exc).__name__, round(time.monotonic() - start, 1))\n"
        )
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", program],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,  # the old settings hang here (20 s pool wait, or no timeout at all)
            check=False,
        )
    verdict = next((line.split() for line in result.stdout.splitlines() if line.startswith("FAILED ")), None)
    assert verdict, result.stdout + result.stderr[-2000:]
    assert float(verdict[2]) < BOUND, result.stdout


def test_redis_timeouts_reach_the_broker_and_the_cache(tmp_path):
    # redis-py 8 defaults to 5 s itself; older clients wait forever. Ours are explicit and set.
    program = (
        "from django.core.cache import cache\nfrom django_q.brokers import get_broker\n"
        "for client in (get_broker().connection, cache._cache.get_client()):\n"
        "    kwargs = client.connection_pool.connection_kwargs\n"
        "    print('TIMEOUTS', kwargs['socket_connect_timeout'], kwargs['socket_timeout'])\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    environment.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL="redis://127.0.0.1:1/0",  # never connected to
        REDIS_CONNECT_TIMEOUT="1.5",
        REDIS_TIMEOUT="7.5",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", program],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("TIMEOUTS ")]
    assert lines == [["1.5", "7.5"], ["1.5", "7.5"]], result.stdout + result.stderr[-2000:]


@pytest.mark.parametrize("down", ["database", "redis", "database-without-driver-timeouts"])
def test_healthz_answers_503_naming_the_silent_part_in_seconds(tmp_path, down):
    with tarpit() as port:
        env = {"DATABASE_URL": tarpit_urls(port)["database"]} if down.startswith("database") else {}
        env["REDIS_URL"] = tarpit_urls(port)["redis"] if down == "redis" else ""
        if down == "database-without-driver-timeouts":  # only the probe's own bound is left
            env.update(DB_CONNECT_TIMEOUT="600", DB_POOL_TIMEOUT="600")
        with uvicorn_server(tmp_path, **env) as base:
            response = httpx.get(f"{base}/healthz", timeout=BOUND)  # raises past the bound
            again = httpx.get(f"{base}/healthz", timeout=BOUND)  # a probe still stuck is not stacked
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    if down.startswith("database"):
        assert body["database"] == "down"
    else:
        assert body == {"status": "unavailable", "database": "ok", "queue": "down"}
    assert again.status_code == 503


def test_healthz_is_200_when_everything_answers(tmp_path):
    with uvicorn_server(tmp_path, REDIS_URL="") as base:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            },
            capture_output=True,
            check=True,
            timeout=300,
        )
        response = httpx.get(f"{base}/healthz", timeout=BOUND)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "queue": "ok"}
