"""Result cache, Idempotency-Key and the per-user throttle of POST /api/virtual-fitting."""

import pytest
from django.core.cache import cache
from django_q.models import OrmQ

from fitting.models import FittingResult, FittingResultImage
from fitting.pipeline import run_job
from tests.factories import make_photo
from tests.helpers import body

URL = "/api/virtual-fitting"
# Real commits, so jobs are enqueued on commit as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def run_queued():
    """Run what is in the ORM queue, as a worker would."""
    for queued in OrmQ.objects.all():
        run_job(job_id=queued.task["args"][0], attempt=queued.task["args"][1])
        queued.delete()


@pytest.fixture
def cache_on(settings):
    settings.FITTING_RESULT_CACHE = True


def test_repeat_request_completes_from_cache_without_the_engine(cache_on, fake_gemini, api, photo, catalogue):
    first = api.post(URL, body(photo, catalogue["top"], catalogue["bottom"]), format="json").json()
    run_queued()
    calls = len(fake_gemini.requests)
    assert calls == 3  # two steps and the message
    response = api.post(URL, body(photo, catalogue["bottom"], catalogue["top"]), format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "completed"
    assert OrmQ.objects.count() == 0  # nothing enqueued
    assert len(fake_gemini.requests) == calls  # no engine call
    second = api.get(f"{URL}/{response.json()['jobId']}").json()
    original = api.get(f"{URL}/{first['jobId']}").json()
    assert second["cached"] is True and original["cached"] is False
    assert second["status"] == "completed"
    assert second["resultImageUrl"] == original["resultImageUrl"]  # the same file, not a copy
    assert second["llmMessage"] == original["llmMessage"]
    assert [s["imageUrl"] for s in second["steps"]] == [s["imageUrl"] for s in original["steps"]]
    assert len({row.image.name for row in FittingResultImage.objects.all()}) == 2
    # Every step of a whole-result hit is reused, and says so (issue 25, 12(e)).
    assert [(s["category"], s["cached"]) for s in second["steps"]] == [("top", True), ("bottom", True)]
    assert [s["cached"] for s in original["steps"]] == [False, False]


def test_cache_key_includes_photo_content_and_engine(cache_on, api, photo, user, catalogue, settings):
    api.post(URL, body(photo, catalogue["top"]), format="json")
    run_queued()
    other_photo = make_photo(user, color=(10, 200, 10))
    assert api.post(URL, body(other_photo, catalogue["top"]), format="json").json()["status"] == "processing"
    settings.GEMINI_API_KEY = "k"
    settings.FITTING_ENGINE = "gemini"
    assert api.post(URL, body(photo, catalogue["top"]), format="json").json()["status"] == "processing"


def test_cache_can_be_switched_off(api, photo, catalogue, settings):
    settings.FITTING_RESULT_CACHE = False
    api.post(URL, body(photo, catalogue["top"]), format="json")
    run_queued()
    assert api.post(URL, body(photo, catalogue["top"]), format="json").json()["status"] == "processing"


def test_same_idempotency_key_returns_the_same_job(api, photo, catalogue):
    headers = {"HTTP_IDEMPOTENCY_KEY": "key-1"}
    first = api.post(URL, body(photo, catalogue["top"]), format="json", **headers)
    run_queued()  # the job moves on; the replayed body is still the accepted one
    second = api.post(URL, body(photo, catalogue["top"]), format="json", **headers)
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert first["Location"] == second["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert FittingResult.objects.count() == 1


def test_same_key_with_another_body_is_refused(api, photo, catalogue):
    api.post(URL, body(photo, catalogue["top"]), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    response = api.post(URL, body(photo, catalogue["bottom"]), format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert FittingResult.objects.count() == 1


def test_keys_are_per_user_and_expire(api, photo, catalogue, other_user):
    from datetime import timedelta

    from django.utils import timezone
    from rest_framework.test import APIClient

    api.post(URL, body(photo, catalogue["top"]), format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = APIClient()
    other.force_authenticate(other_user)
    theirs = other.post(URL, body(make_photo(other_user), catalogue["top"]), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert theirs.status_code == 202
    assert FittingResult.objects.count() == 2
    FittingResult.objects.update(created_at=timezone.now() - timedelta(hours=25))
    again = api.post(URL, body(photo, catalogue["top"]), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 202 and "Idempotent-Replayed" not in again
    assert FittingResult.objects.count() == 3


def test_invalid_request_with_a_key_writes_nothing(api, photo):
    response = api.post(URL, {"userPhotoUrl": photo.image.url, "items": []}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.json()["error"]["code"] == "INSUFFICIENT_ITEMS"
    assert FittingResult.objects.count() == 0


def test_post_is_throttled_per_user(api, photo, catalogue, settings, other_user):
    from rest_framework.test import APIClient

    cache.clear()
    settings.FITTING_START_RATE = "2/minute"
    codes = [api.post(URL, body(photo, catalogue["top"]), format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    response = api.post(URL, body(photo, catalogue["top"]), format="json")
    assert response.json()["error"]["code"] == "THROTTLED"
    assert int(response["Retry-After"]) > 0
    assert api.get(URL).status_code == 200  # reads are not throttled
    other = APIClient()
    other.force_authenticate(other_user)
    assert other.post(URL, body(make_photo(other_user), catalogue["top"]), format="json").status_code == 202
    cache.clear()


def test_the_cache_is_per_owner_by_default(cache_on, api, photo, user, other_user, catalogue, settings):
    from rest_framework.test import APIClient

    assert settings.FITTING_RESULT_CACHE_SCOPE == "owner"
    api.post(URL, body(photo, catalogue["top"]), format="json")
    run_queued()
    other = APIClient()
    other.force_authenticate(other_user)
    same_bytes = make_photo(other_user)  # the same picture, uploaded by someone else
    assert same_bytes.content_hash == photo.content_hash
    assert other.post(URL, body(same_bytes, catalogue["top"]), format="json").json()["status"] == "processing"
    # ... while the owner's own repeat is a hit.
    assert api.post(URL, body(make_photo(user), catalogue["top"]), format="json").json()["status"] == "completed"

    settings.FITTING_RESULT_CACHE_SCOPE = "global"
    assert other.post(URL, body(same_bytes, catalogue["top"]), format="json").json()["status"] == "completed"
