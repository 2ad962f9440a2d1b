"""API tokens (knox): a digest in the database, a lifetime, logout of one token or all of them."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.factories import image_bytes, make_token, make_user

PASSWORD = "pw-for-tests-123"  # tests.factories.make_user's
PHOTOS = "/api/users/me/photos"


def login(username: str = "alice", password: str = PASSWORD):
    return APIClient().post("/api/auth/token", {"username": username, "password": password}, format="json")


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def assert_refused(response) -> None:
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "NOT_AUTHENTICATED"
    assert response["WWW-Authenticate"] == "Token"


def test_login_gives_a_token_that_works_until_its_expiry(user, settings):
    settings.API_TOKEN_TTL = timedelta(days=30)
    before = timezone.now()
    response = login()
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiry"}
    expiry = parse_datetime(body["expiry"])
    assert before + timedelta(days=30) <= expiry <= timezone.now() + timedelta(days=30)
    assert client_with(body["token"]).get(PHOTOS).status_code == 200


def test_the_lifetime_is_api_token_ttl(user, settings):
    settings.API_TOKEN_TTL = timedelta(hours=2)
    login()
    expiry = AuthToken.objects.get(user=user).expiry
    assert timedelta(hours=1, minutes=59) < expiry - timezone.now() <= timedelta(hours=2)


def test_the_database_holds_only_a_digest_of_the_token(user):
    key = login().json()["token"]
    row = AuthToken.objects.get(user=user)
    assert row.digest == hashlib.sha512(key.encode()).hexdigest()
    stored = [str(value) for value in AuthToken.objects.filter(user=user).values_list(*_columns()).get()]
    assert not any(key in value for value in stored)
    assert len(row.token_key) < len(key) // 2  # the lookup prefix only


def _columns() -> list[str]:
    return [field.attname for field in AuthToken._meta.concrete_fields]


def test_logout_revokes_this_token_only(user):
    phone, laptop = login().json()["token"], login().json()["token"]
    response = client_with(phone).post("/api/auth/logout")
    assert response.status_code == 204
    assert_refused(client_with(phone).get(PHOTOS))
    assert_refused(client_with(phone).post("/api/auth/logout"))  # already revoked
    assert client_with(laptop).get(PHOTOS).status_code == 200
    assert AuthToken.objects.filter(user=user).count() == 1


def test_logout_all_revokes_every_token_of_the_user(user, other_user):
    tokens = [login().json()["token"] for _ in range(3)]
    bobs = login("bob").json()["token"]
    assert client_with(tokens[1]).post("/api/auth/logout-all").status_code == 204
    for token in tokens:
        assert_refused(client_with(token).get(PHOTOS))
    assert not AuthToken.objects.filter(user=user).exists()
    assert client_with(bobs).get(PHOTOS).status_code == 200


def test_logout_needs_a_token_not_a_session(user, client):
    client.force_login(user)
    for path in ("/api/auth/logout", "/api/auth/logout-all"):
        assert client.post(path).status_code == 401
    assert client.get(PHOTOS).status_code == 200  # the browser session is not touched
    assert_refused(APIClient().post("/api/auth/logout"))


def test_an_expired_token_is_refused_and_deleted(user):
    token = make_token(user)
    assert client_with(token).get(PHOTOS).status_code == 200
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))
    response = client_with(token).get(PHOTOS, HTTP_ACCEPT_LANGUAGE="en")
    assert_refused(response)
    assert response.json()["error"]["message"] == "Invalid token."
    assert not AuthToken.objects.filter(user=user).exists()


def test_a_new_login_deletes_the_users_expired_tokens(user, other_user):
    make_token(user)
    AuthToken.objects.filter(user=user).update(expiry=timezone.now() - timedelta(seconds=1))
    bobs = make_token(other_user)
    login()
    assert AuthToken.objects.filter(user=user).count() == 1
    assert client_with(bobs).get(PHOTOS).status_code == 200


def test_a_token_of_an_inactive_user_is_refused(user):
    token = make_token(user)
    user.is_active = False
    user.save()
    assert_refused(client_with(token).get(PHOTOS))


def test_throttles_apply_to_token_clients(user, settings):
    cache.clear()
    settings.UPLOAD_RATE = "2/minute"
    client = client_with(make_token(user))
    codes = [client.post(PHOTOS, {"image": _upload()}, format="multipart").status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    cache.clear()


def _upload():
    return SimpleUploadedFile("me.jpg", image_bytes(fmt="JPEG"), content_type="image/jpeg")


def test_login_limits_still_apply_to_the_token_exchange(user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(password="wrong").status_code == 400
    response = login(password="wrong")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "THROTTLED"
    assert login().status_code == 429  # the right password too, while locked
    assert not AuthToken.objects.exists()


# --- tokens DRF issued before the move to knox ------------------------------------------------
LEGACY_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's format: 40 hex characters
BEFORE = ("users", "0003_verbose_names")


@pytest.mark.django_db(transaction=True)
def test_a_token_drf_issued_before_the_upgrade_keeps_working_with_a_lifetime(settings):
    settings.API_TOKEN_TTL = timedelta(days=30)
    user = make_user("dave")
    MigrationExecutor(connection).migrate([BEFORE])
    with connection.cursor() as cursor:  # rest_framework.authtoken's table, with its key in clear
        cursor.execute(
            'CREATE TABLE "authtoken_token" ("key" varchar(40) NOT NULL PRIMARY KEY, '
            '"created" timestamp NOT NULL, "user_id" integer NOT NULL UNIQUE)'
        )
        cursor.execute('INSERT INTO "authtoken_token" VALUES (%s, %s, %s)', [LEGACY_KEY, timezone.now(), user.id])
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('authtoken', '0001_initial', %s)",
            [timezone.now()],
        )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert client_with(LEGACY_KEY).get(PHOTOS).status_code == 200
    row = AuthToken.objects.get(user=user)
    assert row.digest == hashlib.sha512(LEGACY_KEY.encode()).hexdigest()
    assert timedelta(days=29) < row.expiry - timezone.now() <= timedelta(days=30)
    assert "authtoken_token" not in connection.introspection.table_names()  # no key left in clear
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations WHERE app = 'authtoken'")
        assert cursor.fetchone() == (0,)
    assert client_with("0" * 40).get(PHOTOS).status_code == 401
