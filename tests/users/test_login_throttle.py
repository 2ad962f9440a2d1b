"""Password guessing is limited (django-axes): per username and per address, 429 THROTTLED + Retry-After."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import F
from django.test import AsyncClient, Client
from django.urls import reverse

from tests.factories import make_user

PASSWORD = "pw-for-tests-123"  # tests.factories.make_user's
TOKEN_URL = "/api/auth/token"
ROOT = Path(__file__).resolve().parents[2]


def limit() -> int:
    return settings.AXES_FAILURE_LIMIT


def cool_off_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def token(client: Client, username: str, password: str, address: str = "10.0.0.1", **headers):
    return client.post(
        TOKEN_URL,
        {"username": username, "password": password},
        content_type="application/json",
        REMOTE_ADDR=address,
        HTTP_ACCEPT_LANGUAGE="en",
        **headers,
    )


def outcome(response) -> tuple:
    return response.status_code, response.json(), response.get("Retry-After")


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert response.json() == {
        "error": {"code": "THROTTLED", "message": "Too many failed login attempts. Try again later.", "field": None}
    }
    assert response["Retry-After"] == str(cool_off_seconds())


def assert_bad_credentials(response) -> None:
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_CREDENTIALS"


def pass_the_cool_off() -> None:
    """Move every recorded failure back past the cool-off (the clock, at the only place it is read)."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))


# --- the API token endpoint -----------------------------------------------------------------
def test_a_username_is_locked_from_one_address_after_the_limit(client, user):
    for _ in range(limit() - 1):
        assert_bad_credentials(token(client, "alice", "wrong", address="10.0.0.1"))
    assert_throttled(token(client, "alice", "wrong", address="10.0.0.1"))
    assert_throttled(token(client, "alice", PASSWORD, address="10.0.0.1"))


def test_guessing_one_password_from_one_address_locks_out_no_one_else(client, user):
    # Anyone could otherwise lock anyone out, and one person behind a carrier's NAT everyone there.
    make_user("carol")
    responses = [token(client, "alice", "wrong", address="10.0.0.1") for _ in range(30)]
    assert [r.status_code for r in responses] == [400] * (limit() - 1) + [429] * (30 - limit() + 1)
    assert token(client, "carol", PASSWORD, address="10.0.0.1").status_code == 200
    assert token(client, "alice", PASSWORD, address="10.0.0.2").status_code == 200


def test_one_address_counts_only_up_to_the_pair_limit_towards_the_username_lock(client, user, settings):
    settings.LOGIN_USERNAME_FAILURE_LIMIT = 2 * limit()
    for _ in range(3 * settings.LOGIN_USERNAME_FAILURE_LIMIT):
        token(client, "alice", "wrong", address="10.0.0.1")
    assert token(client, "alice", PASSWORD, address="10.0.0.2").status_code == 200


def test_a_username_guessed_from_many_addresses_is_locked_from_every_address(client, user):
    # Below the pair limit at each address: only the count over all of them stops it.
    per_address = limit() - 1
    statuses = [
        token(client, "alice", "wrong", address=f"10.1.0.{guess // per_address}").status_code
        for guess in range(settings.LOGIN_USERNAME_FAILURE_LIMIT)
    ]
    assert statuses == [400] * (settings.LOGIN_USERNAME_FAILURE_LIMIT - 1) + [429]
    assert_throttled(token(client, "alice", PASSWORD, address="10.2.0.1"))
    make_user("carol")
    assert token(client, "carol", PASSWORD, address="10.1.0.1").status_code == 200

    pass_the_cool_off()
    assert token(client, "alice", PASSWORD, address="10.2.0.1").status_code == 200


@pytest.mark.parametrize("spread", ["one address", "many addresses"])
def test_an_unknown_username_is_locked_exactly_like_a_real_one(client, user, spread):
    count = limit() + 2 if spread == "one address" else settings.LOGIN_USERNAME_FAILURE_LIMIT + 2

    def attempts(username: str, network: int) -> list[tuple]:
        def address(i: int) -> str:
            return f"10.{network}.0.1" if spread == "one address" else f"10.{network}.{i // (limit() - 1)}.1"

        return [outcome(token(client, username, "wrong", address=address(i))) for i in range(count)]

    real, unknown = attempts("alice", 1), attempts("nobody", 2)
    assert real == unknown
    first_refused = limit() if spread == "one address" else settings.LOGIN_USERNAME_FAILURE_LIMIT
    assert [status for status, _, _ in real] == [400] * (first_refused - 1) + [429] * (count - first_refused + 1)


def test_the_right_password_is_refused_during_the_lockout_and_works_after_the_cool_off(client, user):
    for _ in range(limit()):
        token(client, "alice", "wrong")
    assert_throttled(token(client, "alice", PASSWORD))

    pass_the_cool_off()
    response = token(client, "alice", PASSWORD)
    assert response.status_code == 200
    assert response.json()["token"]


def test_an_address_guessing_usernames_is_locked_for_every_username(client, user):
    make_user("carol")
    usernames = settings.LOGIN_ADDRESS_USERNAME_LIMIT
    statuses = [token(client, f"guess{n}", "wrong", address="192.0.2.7").status_code for n in range(25)]
    assert statuses == [400] * (usernames - 1) + [429] * (25 - usernames + 1)
    # From that address even a real user with the right password waits; from elsewhere she logs in.
    assert_throttled(token(client, "alice", PASSWORD, address="192.0.2.7"))
    assert token(client, "alice", PASSWORD, address="192.0.2.8").status_code == 200
    # The guessed usernames themselves are not locked elsewhere either.
    assert token(client, "carol", PASSWORD, address="192.0.2.8").status_code == 200


def test_a_few_people_mistyping_behind_one_address_lock_out_no_one(client, user):
    for n in range(settings.LOGIN_ADDRESS_USERNAME_LIMIT - 2):
        assert_bad_credentials(token(client, f"neighbour{n}", "wrong", address="198.51.100.1"))
    assert_bad_credentials(token(client, "alice", "wrong", address="198.51.100.1"))
    assert token(client, "alice", PASSWORD, address="198.51.100.1").status_code == 200


def test_a_client_cannot_change_its_address_with_x_forwarded_for(client, user):
    # No proxy is configured (TRUSTED_PROXY_COUNT=0): the header is the client's own, ignored.
    for attempt in range(limit()):
        response = token(client, "alice", "wrong", address="192.0.2.7", HTTP_X_FORWARDED_FOR=f"203.0.113.{attempt}")
    assert_throttled(response)
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"192.0.2.7"}


def test_behind_proxies_the_address_is_the_one_the_outermost_trusted_proxy_appended():
    # The settings read TRUSTED_PROXY_COUNT at start, so a fresh process with it set.
    script = """
import django, json
django.setup()
from axes.helpers import get_client_ip_address
from django.test import RequestFactory
def address(xff):
    extra = {"HTTP_X_FORWARDED_FOR": xff} if xff is not None else {}
    return get_client_ip_address(RequestFactory().post("/", REMOTE_ADDR="10.0.0.2", **extra))
print(json.dumps([
    address("198.51.100.9, 10.0.0.1"),
    address("6.6.6.6, 198.51.100.9, 10.0.0.1"),
    address("not-an-address, 6.6.6.6, 198.51.100.9, 10.0.0.1"),
    address(None),
]))
"""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    environment.update(DJANGO_SETTINGS_MODULE="config.settings.test", TRUSTED_PROXY_COUNT="2")
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Client 198.51.100.9 -> CDN (appends the client) -> load balancer (appends the CDN, 10.0.0.1)
    # -> app (socket: the load balancer, 10.0.0.2). The client is the entry the CDN appended,
    # whatever the client wrote before it. A request that did not come through both proxies has
    # no trustworthy address: such requests share one count.
    assert json.loads(result.stdout) == ["198.51.100.9", "198.51.100.9", "198.51.100.9", None]


def test_the_lockout_answers_the_same_under_asgi(user):
    # Under uvicorn the middleware chain is async: axes' middleware takes another path there.
    async def scenario():
        client = AsyncClient()
        responses = []
        for _ in range(limit()):
            responses.append(
                await client.post(
                    TOKEN_URL,
                    json.dumps({"username": "alice", "password": "wrong"}),
                    content_type="application/json",
                    headers={"Accept-Language": "en"},
                )
            )
        return responses

    responses = async_to_sync(scenario)()
    assert_bad_credentials(responses[0])
    assert_throttled(responses[-1])


# --- a success clears the count -------------------------------------------------------------
def test_a_successful_token_login_clears_that_usernames_failures_from_that_address(client, user):
    for _ in range(2):
        for _ in range(limit() - 1):
            assert_bad_credentials(token(client, "alice", "wrong"))
        assert token(client, "alice", PASSWORD).status_code == 200


def test_a_successful_page_login_clears_the_count(client, user):
    for _ in range(2):
        for _ in range(limit() - 1):
            assert client.post("/login/", {"username": "alice", "password": "wrong"}).status_code == 200
        assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
        client.logout()


def test_logging_into_ones_own_account_does_not_clear_guesses_at_another(client, user):
    make_user("mallory")
    for _ in range(limit() - 1):
        assert_bad_credentials(token(client, "alice", "wrong"))
    assert token(client, "mallory", PASSWORD).status_code == 200
    assert_throttled(token(client, "alice", "wrong"))


# --- the login page and the admin login -----------------------------------------------------
@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_login_pages_answer_429_with_retry_after(client, db, url):
    staff = make_user("support", is_staff=True)
    for _ in range(limit() - 1):
        response = client.post(url, {"username": "support", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    response = client.post(url, {"username": "support", "password": "wrong"})
    assert response.status_code == 429
    assert response["Retry-After"] == str(cool_off_seconds())
    page = response.content.decode()
    minutes = cool_off_seconds() // 60
    assert f"{minutes}분 후에 다시 시도해 주세요" in page
    assert f"Try again in {minutes} minutes" in page

    response = client.post(url, {"username": "support", "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session

    pass_the_cool_off()
    assert client.post(url, {"username": staff.username, "password": PASSWORD}).status_code == 302


def test_staff_see_and_clear_a_lockout_in_the_admin(client, user):
    for _ in range(limit()):
        token(client, "alice", "wrong")
    staff = Client()
    staff.force_login(make_user("support", is_staff=True, is_superuser=True))
    changelist = staff.get(reverse("admin:axes_accessattempt_changelist"), HTTP_ACCEPT_LANGUAGE="en")
    assert changelist.status_code == 200
    assert "alice" in changelist.content.decode()

    attempt = AccessAttempt.objects.get(username="alice")
    response = staff.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert token(client, "alice", PASSWORD).status_code == 200


def test_the_schema_documents_the_lockout_of_the_token_endpoint(client, db):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    throttled = schema["paths"]["/api/auth/token"]["post"]["responses"]["429"]
    assert "THROTTLED" in throttled["description"]
    assert throttled["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert throttled["headers"]["Retry-After"]["schema"]["type"] == "integer"
