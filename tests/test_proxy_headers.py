"""uvicorn, started as every deployment starts it (config.serve), believes X-Forwarded-For only
from a trusted proxy: with TRUSTED_PROXY_COUNT=0 a client's own header never becomes its address."""

import os
import sqlite3
import subprocess
import sys

import httpx
import pytest
from django.test import override_settings

from config.serve import uvicorn_arguments
from tests.e2e import ROOT
from tests.servers import uvicorn_server

# dbagnostic: uvicorn on this module's own SQLite file, or no database at all, whatever the stage.
pytestmark = pytest.mark.dbagnostic


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A migrated SQLite file the uvicorn processes of this module share (the login-attempt rows)."""
    path = tmp_path_factory.mktemp("proxy") / "db.sqlite3"
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings.local", DATABASE_URL=f"sqlite:///{path}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=environment,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path


def failed_login_address(base: str, database, username: str, forwarded_for: str) -> str:
    """The address the app counted a failed login from (the login limits' row)."""
    response = httpx.post(
        f"{base}/api/auth/token",
        json={"username": username, "password": "wrong"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT ip_address FROM axes_accessattempt WHERE username = ?", (username,))
        return rows.fetchone()[0]


def test_without_a_proxy_a_local_clients_own_forwarded_for_is_ignored(tmp_path, database):
    with uvicorn_server(tmp_path, DATABASE_URL=f"sqlite:///{database}", TRUSTED_PROXY_COUNT="0") as base:
        assert failed_login_address(base, database, "forger", "203.0.113.7") == "127.0.0.1"


def test_behind_a_trusted_proxy_the_address_it_appended_is_used(tmp_path, database):
    # nginx on this machine (FORWARDED_ALLOW_IPS' default 127.0.0.1) appended the client's address
    # after whatever the client wrote itself.
    env = {"DATABASE_URL": f"sqlite:///{database}", "TRUSTED_PROXY_COUNT": "1"}
    with uvicorn_server(tmp_path, **env) as base:
        assert failed_login_address(base, database, "proxied", "198.51.100.9, 203.0.113.7") == "203.0.113.7"


@pytest.mark.parametrize(
    ("count", "allowed", "arguments"),
    [
        (0, "127.0.0.1", ["--no-proxy-headers"]),
        (1, "127.0.0.1", ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]),
        (2, "10.0.0.0/8,192.0.2.4", ["--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8,192.0.2.4"]),
    ],
)
def test_uvicorns_proxy_options_come_from_the_settings(count, allowed, arguments):
    with override_settings(TRUSTED_PROXY_COUNT=count, FORWARDED_ALLOW_IPS=allowed):
        assert uvicorn_arguments() == arguments


def test_the_launcher_refuses_uvicorns_own_proxy_options():
    result = subprocess.run(
        [sys.executable, "-m", "config.serve", "--forwarded-allow-ips=*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "configuration error: set TRUSTED_PROXY_COUNT and FORWARDED_ALLOW_IPS instead of uvicorn's proxy options\n"
    )


def throttle_address(forwarded_for: str) -> str:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory
    from rest_framework.throttling import AnonRateThrottle

    request = APIRequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded_for)
    return AnonRateThrottle().get_ident(Request(request))


def test_an_anonymous_throttle_counts_the_socket_address_without_a_proxy():
    assert throttle_address("203.0.113.7") == "10.0.0.2"
