"""The daily quota of fitting jobs per user (FITTING_DAILY_QUOTA, staff's per-user override)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from fitting.models import FittingResult, Status, UsageDay
from fitting.services import start
from tests.factories import make_job, make_photo, run_now, start_job
from tests.helpers import body
from users.models import UserLimits

URL = "/api/virtual-fitting"


@pytest.fixture
def quota(settings):
    settings.FITTING_DAILY_QUOTA = 2
    return settings


def test_over_the_quota_is_refused_with_the_reset_time(quota, api, user, photo, catalogue):
    for _ in range(2):
        assert api.post(URL, body(photo, catalogue["top"]), format="json").status_code == 202
    response = api.post(URL, body(photo, catalogue["bottom"]), format="json", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "QUOTA_EXCEEDED"
    now = timezone.now()
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert tomorrow.isoformat() in error["message"]
    assert "daily limit" in error["message"]
    retry_after = int(response["Retry-After"])
    assert abs(retry_after - (tomorrow - now).total_seconds()) <= 5
    assert FittingResult.objects.filter(owner=user).count() == 2  # the refused job was not kept


def test_earlier_days_do_not_count(quota, api, user, photo, catalogue):
    for _ in range(3):
        make_job(user, photo, catalogue["top"], status=Status.COMPLETED, created_at=timezone.now() - timedelta(days=1))
    UsageDay.objects.create(user=user, day=timezone.localdate() - timedelta(days=1), jobs_started=3)
    assert api.post(URL, body(photo, catalogue["top"]), format="json").status_code == 202


def test_deleting_jobs_does_not_give_back_the_days_quota(quota, api, user, photo, catalogue):
    """The quota reads the usage ledger, which deleting a job leaves as it is (issue 25, item 1)."""
    for _ in range(2):
        response = api.post(URL, body(photo, catalogue["top"]), format="json")
        assert response.status_code == 202
        run_now(FittingResult.objects.get(id=response.json()["jobId"]))
        assert api.delete(f"{URL}/{response.json()['jobId']}").status_code == 204
    assert not FittingResult.objects.filter(owner=user).exists()
    response = api.post(URL, body(photo, catalogue["bottom"]), format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert UsageDay.objects.get(user=user, day=timezone.localdate()).jobs_started == 2


def test_result_cache_hits_are_free(quota, api, user, photo, catalogue):
    quota.FITTING_RESULT_CACHE = True
    run_now(start_job(user, photo, catalogue["top"]))
    run_now(start_job(user, photo, catalogue["bottom"]))  # the quota is used up
    response = api.post(URL, body(photo, catalogue["top"]), format="json")  # a repeat: from the cache
    assert response.status_code == 202
    assert response.json()["status"] == "completed"
    assert api.post(URL, body(photo, catalogue["outer"]), format="json").status_code == 429


def test_staff_override_raises_one_users_quota(quota, api, user, other_user, photo, catalogue):
    UserLimits.objects.create(user=user, daily_job_quota=3)
    for _ in range(3):
        assert api.post(URL, body(photo, catalogue["top"]), format="json").status_code == 202
    assert api.post(URL, body(photo, catalogue["top"]), format="json").status_code == 429


def test_zero_means_no_limit(settings, api, user, photo, catalogue):
    settings.FITTING_DAILY_QUOTA = 0
    for _ in range(3):
        start_job(user, photo, catalogue["top"])
    assert api.post(URL, body(photo, catalogue["top"]), format="json").status_code == 202
    settings.FITTING_DAILY_QUOTA = 3
    assert api.post(URL, body(photo, catalogue["top"]), format="json").status_code == 429
    UserLimits.objects.create(user=user, daily_job_quota=0)  # an override of 0: no limit for this user
    assert api.post(URL, body(photo, catalogue["top"]), format="json").status_code == 202


def test_staff_edit_the_quota_on_the_users_page(admin_client, user):
    page = admin_client.get(f"/admin/auth/user/{user.pk}/change/")
    assert page.status_code == 200
    assert b"daily_job_quota" in page.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite runs one writing transaction at a time")
def test_two_starts_at_once_cannot_both_take_the_last_slot(settings, monkeypatch, user, photo, catalogue):
    """Both jobs are inserted before either counts: only the lock on the owner's row stops the second."""
    settings.FITTING_DAILY_QUOTA = 1
    meeting = threading.Barrier(2, timeout=10)

    def quota_after_both_inserted(*, user):
        meeting.wait()
        return 1

    monkeypatch.setattr(start, "user_daily_job_quota", quota_after_both_inserted)
    outcomes: list[str] = []
    photos = iter([photo, make_photo(user)])  # two photos: a start locks its photo's row too

    def one_start():
        try:
            start_job(user, next(photos), catalogue["top"])
            outcomes.append("started")
        except Exception as exc:
            outcomes.append(getattr(exc, "code", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=one_start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["QUOTA_EXCEEDED", "started"]
    assert FittingResult.objects.filter(owner=user).count() == 1
