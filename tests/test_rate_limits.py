"""The per-user rates of starting jobs and uploading photos hold under concurrency.

Many requests of one user at once, each on a thread of its own with its own database
connection: no more of them pass than the rate allows, with the local-memory cache (one
process) and with Redis (what several processes share). Redis is ``REDIS_URL`` if set,
else 127.0.0.1:6379; the test is skipped when it does not answer.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from tests.factories import image_bytes, make_photo, make_user

pytestmark = pytest.mark.django_db(transaction=True)

LOCAL_REDIS = "redis://127.0.0.1:6379/13"
PARALLEL = 40
LIMIT = 5


def redis_url() -> str | None:
    url = os.environ.get("REDIS_URL") or LOCAL_REDIS
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception:
        return None
    return url


@pytest.fixture(params=["locmem", "redis"])
def shared_cache(request, settings) -> str:
    """The cache the throttles count in: empty, and this test's own (a key prefix on Redis)."""
    if request.param == "redis":
        url = redis_url()
        if url is None:
            pytest.skip("Redis does not answer")
        backend = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    else:
        backend = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    settings.CACHES = {"default": {**backend, "KEY_PREFIX": f"test-rates-{uuid.uuid4().hex}"}}
    return request.param


def all_at_once(user, request) -> Counter:
    """``request(client)`` on PARALLEL threads released together; how many of each status."""
    barrier = threading.Barrier(PARALLEL)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        client = APIClient()
        client.force_authenticate(user)
        try:
            barrier.wait(timeout=60)
            statuses.append(request(client).status_code)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(PARALLEL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return Counter(statuses)


def test_parallel_starts_pass_at_most_the_rate(shared_cache, settings, user, catalogue):
    settings.FITTING_START_RATE = f"{LIMIT}/minute"
    photo = make_photo(user)
    body = {"userPhotoUrl": photo.image.url, "items": [{"itemId": catalogue["top"].id, "category": "top"}]}
    statuses = all_at_once(user, lambda client: client.post("/api/virtual-fitting", body, format="json"))
    assert statuses == {202: LIMIT, 429: PARALLEL - LIMIT}


def test_parallel_uploads_pass_at_most_the_rate(shared_cache, settings, user):
    settings.UPLOAD_RATE = f"{LIMIT}/hour"
    data = image_bytes(fmt="JPEG")

    def upload(client):
        image = SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")
        return client.post("/api/users/me/photos", {"image": image}, format="multipart")

    statuses = all_at_once(user, upload)
    assert statuses == {201: LIMIT, 429: PARALLEL - LIMIT}


def test_the_rate_is_per_user_and_says_when_to_retry(shared_cache, settings, user):
    settings.UPLOAD_RATE = f"{LIMIT}/hour"
    data = image_bytes(fmt="JPEG")

    def upload(who):
        client = APIClient()
        client.force_authenticate(who)
        return client.post(
            "/api/users/me/photos",
            {"image": SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")},
            format="multipart",
        )

    assert [upload(user).status_code for _ in range(LIMIT + 1)] == [201] * LIMIT + [429]
    refused = upload(user)
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert upload(make_user("carol")).status_code == 201
