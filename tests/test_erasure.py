"""Erasure: a job, a photo, a whole account, through the API and the admin, files included."""

from __future__ import annotations

import logging
import os
import threading
from io import StringIO

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone
from django_q.conf import Conf as QConf
from django_q.models import OrmQ, Success, Task
from knox.models import AuthToken
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle

from core.files import file_store_new
from fitting.engines.local import LocalEngine
from fitting.errors import JobPhotoDeletedError
from fitting.models import (
    FittingResult,
    FittingResultImage,
    FittingResultItem,
    Status,
    StepAttempt,
    WebhookDelivery,
)
from fitting.pipeline import run_job
from fitting.services.erasure import USER_THROTTLE_SCOPES
from fitting.services.lifecycle import fitting_reprocess
from tests.factories import image_bytes, make_job, make_photo, make_token, run_now, start_job
from tests.helpers import body
from users.models import UserImage


def files_under(media_root, directory: str) -> set[str]:
    path = media_root / directory
    return set(os.listdir(path)) if path.exists() else set()


def paths_of(job: FittingResult) -> set[str]:
    """The job's files: its step images and its quality-gate attempts' own images."""
    return {row.image.path for row in job.images.all()} | {
        row.image.path for row in job.step_attempts.exclude(image="")
    }


def add_rejected_attempt(job: FittingResult) -> str:
    """A rejected attempt with its own image under attempts/, as the quality gate keeps one."""
    row = StepAttempt(job=job, category="top", number=1, outcome="rejected", passed=False)
    file_store_new(row.image, "top.jpg", image_bytes())
    row.save()
    return row.image.path


# --- DELETE /api/virtual-fitting/<jobId> ------------------------------------------------------
def test_deleting_a_job_removes_its_rows_and_files(api, user, photo, catalogue, django_capture_on_commit_callbacks):
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    files = paths_of(job)
    assert len(files) == 2  # top, and bottom shared by the final row
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/virtual-fitting/{job.id}")
    assert response.status_code == 204
    assert not FittingResult.objects.filter(id=job.id).exists()
    assert not FittingResultItem.objects.filter(job_id=job.id).exists()
    assert not FittingResultImage.objects.filter(job_id=job.id).exists()
    assert not any(os.path.exists(path) for path in files)
    assert os.path.exists(photo.image.path)  # the photo is the user's, not the job's
    assert api.get(f"/api/virtual-fitting/{job.id}").status_code == 404


def test_a_file_another_job_shares_stays_until_the_last_row_goes(
    api, user, photo, catalogue, settings, django_capture_on_commit_callbacks
):
    settings.FITTING_RESULT_CACHE = True
    first = run_now(start_job(user, photo, catalogue["top"]))
    second = start_job(user, photo, catalogue["top"])
    assert second.cached
    files = paths_of(second)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/virtual-fitting/{first.id}").status_code == 204
    assert all(os.path.exists(path) for path in files)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/virtual-fitting/{second.id}").status_code == 204
    assert not any(os.path.exists(path) for path in files)


def test_another_users_job_cannot_be_deleted(api, other_user, catalogue):
    theirs = run_now(start_job(other_user, make_photo(other_user), catalogue["top"]))
    response = api.delete(f"/api/virtual-fitting/{theirs.id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert FittingResult.objects.filter(id=theirs.id).exists()
    assert all(os.path.exists(path) for path in paths_of(theirs))
    assert api.delete("/api/virtual-fitting/00000000-0000-0000-0000-000000000000").status_code == 404


class EngineGate:
    """Holds the worker inside its ``gate_call``-th engine call until the test releases it.

    The engine is the pipeline's edge (the image model); the calls are counted in order:
    apply_garment for each step, then write_message.
    """

    def __init__(self, monkeypatch, gate_call: int):
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls = 0
        for name in ("apply_garment", "write_message"):
            monkeypatch.setattr(LocalEngine, name, self._gated(getattr(LocalEngine, name), gate_call))

    def _gated(self, original, gate_call: int):
        def gated(engine, **kwargs):
            self.calls += 1
            if self.calls == gate_call:
                self.entered.set()
                assert self.release.wait(60)
            return original(engine, **kwargs)

        return gated


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "gate_call", [1, 2, 3], ids=["during-first-step", "after-a-stored-step", "while-writing-the-message"]
)
def test_deleting_a_running_job_stops_its_worker_and_leaves_no_file(
    api, user, photo, catalogue, media_root, monkeypatch, caplog, gate_call
):
    caplog.set_level(logging.INFO, logger="fitting")
    gate = EngineGate(monkeypatch, gate_call)
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    errors: list[BaseException] = []

    def worker():
        try:
            run_job(job_id=str(job.id), attempt=job.attempt)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert gate.entered.wait(60)
        assert FittingResultImage.objects.filter(job_id=job.id).count() == gate_call - 1
        assert api.delete(f"/api/virtual-fitting/{job.id}").status_code == 204
    finally:
        gate.release.set()
        thread.join(60)
    assert not thread.is_alive()
    assert errors == []
    assert gate.calls == gate_call  # the worker stopped at its next write: no further step ran
    assert not FittingResult.objects.filter(id=job.id).exists()
    assert files_under(media_root, "results") == set()
    assert "superseded, stopping" in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")] == []


# --- DELETE /api/users/me/photos/<id> ----------------------------------------------------------
def test_deleting_a_photo_removes_its_file_and_finished_jobs_keep_their_history(
    api, user, photo, catalogue, django_capture_on_commit_callbacks
):
    job = run_now(start_job(user, photo, catalogue["top"]))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/users/me/photos/{photo.id}")
    assert response.status_code == 204
    assert not UserImage.objects.filter(id=photo.id).exists()
    assert not os.path.exists(photo.image.path)
    job.refresh_from_db()
    assert job.user_image is None
    body = api.get(f"/api/virtual-fitting/{job.id}").json()
    assert body["status"] == "completed" and body["resultImageUrl"]
    assert all(os.path.exists(path) for path in paths_of(job))
    assert api.get("/api/users/me/photos").json() == []


def test_a_photo_a_processing_job_uses_is_refused_with_409(api, user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    response = api.delete(f"/api/users/me/photos/{photo.id}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "PHOTO_IN_USE"
    assert UserImage.objects.filter(id=photo.id).exists() and os.path.exists(photo.image.path)
    FittingResult.objects.filter(id=job.id).update(status=Status.FAILED)
    assert api.delete(f"/api/users/me/photos/{photo.id}").status_code == 204


def test_another_users_photo_cannot_be_deleted(api, other_user):
    theirs = make_photo(other_user)
    response = api.delete(f"/api/users/me/photos/{theirs.id}")
    assert response.status_code == 404
    assert UserImage.objects.filter(id=theirs.id).exists() and os.path.exists(theirs.image.path)
    assert api.delete("/api/users/me/photos/999999").status_code == 404


def test_a_job_whose_photo_is_gone_fails_truthfully_and_is_not_reprocessed(user, photo, catalogue):
    running = make_job(user, photo, catalogue["top"], status=Status.PROCESSING)
    failed = make_job(user, photo, catalogue["top"], catalogue["bottom"], failed_step="bottom", done=["top"])
    FittingResult.objects.filter(id__in=[running.id, failed.id]).update(user_image=None)
    running = run_now(running)
    assert (running.status, running.error_code) == ("failed", "PHOTO_UNREADABLE")
    failed.refresh_from_db()
    with pytest.raises(JobPhotoDeletedError) as raised:
        fitting_reprocess(job=failed)
    assert raised.value.code == "NOT_REPROCESSABLE"
    failed.refresh_from_db()
    assert (failed.status, failed.attempt) == ("failed", 1)


def test_reprocess_command_skips_a_job_whose_photo_is_gone(user, photo, catalogue):
    job = make_job(user, photo, catalogue["top"], failed_step="top")
    FittingResult.objects.filter(id=job.id).update(user_image=None)
    for dry_run in (["--dry-run"], []):
        out = StringIO()
        with pytest.raises(CommandError, match="not reprocessed"):
            call_command("reprocess_failed_fittings", str(job.id), *dry_run, stdout=out)
        assert "skipped: its photo was deleted" in out.getvalue()
    job.refresh_from_db()
    assert job.attempt == 1


# --- DELETE /api/users/me ---------------------------------------------------------------------
def test_deleting_the_account_erases_every_row_and_file_of_the_user_only(
    user, other_user, catalogue, django_capture_on_commit_callbacks
):
    photos = [make_photo(user), make_photo(user)]
    done = run_now(start_job(user, photos[0], catalogue["top"], catalogue["bottom"]))
    rejected = add_rejected_attempt(done)
    running = start_job(user, photos[1], catalogue["top"])
    token = make_token(user)
    Client().force_login(user)  # a browser session, stored in the database
    assert Session.objects.count() == 1
    # Bob's kept job shares a file with one of Alice's jobs (a cached result).
    theirs_photo = make_photo(other_user)
    theirs = make_job(other_user, theirs_photo, catalogue["top"], status=Status.COMPLETED, done=["top"])
    shared = done.images.get(step="top")
    FittingResultImage.objects.filter(job=theirs).update(image=shared.image.name)
    make_token(other_user)
    Client().force_login(other_user)
    alice_files = {p.image.path for p in photos} | paths_of(done)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete("/api/users/me")
    assert response.status_code == 204

    assert not get_user_model().objects.filter(id=user.id).exists()
    assert not UserImage.objects.filter(owner_id=user.id).exists()
    assert not FittingResult.objects.filter(id__in=[done.id, running.id]).exists()
    assert not AuthToken.objects.filter(user_id=user.id).exists()
    assert [s.get_decoded()["_auth_user_id"] for s in Session.objects.all()] == [str(other_user.id)]
    assert rejected in alice_files
    assert not any(os.path.exists(path) for path in alice_files - {shared.image.path})
    assert os.path.exists(shared.image.path)  # Bob's job still shows it
    assert os.path.exists(theirs_photo.image.path)
    assert AuthToken.objects.filter(user=other_user).count() == 1
    assert FittingResult.objects.filter(id=theirs.id).exists()
    assert client.get("/api/users/me/photos").status_code == 401  # the token is gone


def test_deleting_the_account_ends_the_browser_session(user, client):
    client.force_login(user)
    assert client.get("/api/users/me/photos").status_code == 200
    assert client.delete("/api/users/me").status_code == 204
    assert client.get("/api/users/me/photos").status_code in (401, 403)
    assert not Session.objects.exists()


# --- the admin ----------------------------------------------------------------------------------
def test_admin_deletes_a_job_with_its_files(staff_client, user, photo, catalogue, django_capture_on_commit_callbacks):
    job = run_now(start_job(user, photo, catalogue["top"]))
    files = paths_of(job)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:fitting_fittingresult_delete", args=[job.id]), {"post": "yes"})
    assert response.status_code == 302
    assert not FittingResult.objects.filter(id=job.id).exists()
    assert not any(os.path.exists(path) for path in files)


def test_admin_bulk_delete_of_jobs_removes_their_files(
    staff_client, user, photo, catalogue, django_capture_on_commit_callbacks
):
    jobs = [run_now(start_job(user, photo, catalogue["top"])) for _ in range(2)]
    files = set().union(*(paths_of(job) for job in jobs))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:fitting_fittingresult_changelist"),
            {"action": "delete_selected", "_selected_action": [str(j.id) for j in jobs], "post": "yes"},
        )
    assert response.status_code == 302
    assert not FittingResult.objects.exists()
    assert not any(os.path.exists(path) for path in files)


def test_admin_deletes_a_photo_with_its_file_but_refuses_one_in_use(
    staff_client, user, catalogue, django_capture_on_commit_callbacks
):
    free, busy = make_photo(user), make_photo(user)
    start_job(user, busy, catalogue["top"])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:users_userimage_delete", args=[free.id]), {"post": "yes"})
    assert response.status_code == 302
    assert not UserImage.objects.filter(id=free.id).exists() and not os.path.exists(free.image.path)

    page = staff_client.get(reverse("admin:users_userimage_delete", args=[busy.id]))
    assert page.status_code == 200
    assert "is still processing with this photo (PHOTO_IN_USE)" in page.content.decode()
    response = staff_client.post(reverse("admin:users_userimage_delete", args=[busy.id]), {"post": "yes"})
    assert response.status_code == 200  # the refusal page again, nothing deleted
    response = staff_client.post(
        reverse("admin:users_userimage_changelist"),
        {"action": "delete_selected", "_selected_action": [busy.id], "post": "yes"},
    )
    assert response.status_code == 200
    assert UserImage.objects.filter(id=busy.id).exists() and os.path.exists(busy.image.path)


def test_admin_deletes_a_user_with_everything_of_theirs(
    staff_client, user, photo, catalogue, django_capture_on_commit_callbacks
):
    job = run_now(start_job(user, photo, catalogue["top"]))
    files = paths_of(job) | {photo.image.path}
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(reverse("admin:auth_user_delete", args=[user.id]), {"post": "yes"})
    assert response.status_code == 302
    assert not get_user_model().objects.filter(id=user.id).exists()
    assert not FittingResult.objects.exists() and not UserImage.objects.exists()
    assert not any(os.path.exists(path) for path in files)


def test_admin_job_page_of_a_job_without_photo_has_no_reprocess_button(staff_client, user, photo, catalogue):
    job = make_job(user, photo, catalogue["top"], failed_step="top")
    FittingResult.objects.filter(id=job.id).update(user_image=None)
    response = staff_client.get(reverse("admin:fitting_fittingresult_change", args=[job.id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "deleted by its owner" in html
    assert reverse("admin:fitting_fittingresult_reprocess", args=[job.id]) not in html
    response = staff_client.post(
        reverse("admin:fitting_fittingresult_changelist"),
        {"action": "reprocess_resume", "_selected_action": [str(job.id)], "index": 0},
        follow=True,
    )
    assert any("its photo was deleted by its owner" in str(m) for m in response.context["messages"])
    job.refresh_from_db()
    assert job.attempt == 1


def test_the_schema_documents_the_deletions(client, db):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    photo = schema["paths"]["/api/users/me/photos/{photo_id}"]["delete"]["responses"]
    assert set(photo) == {"204", "401", "404", "409"} and "PHOTO_IN_USE" in photo["409"]["description"]
    assert set(schema["paths"]["/api/virtual-fitting/{job_id}"]["delete"]["responses"]) == {"204", "401", "404"}
    assert set(schema["paths"]["/api/users/me"]["delete"]["responses"]) == {"204", "401"}


def test_a_photo_id_beyond_the_database_integer_is_404(api):
    assert api.delete(f"/api/users/me/photos/{2**70}").status_code == 404


def test_delete_on_a_malformed_id_answers_the_json_404(user):
    # Token-authenticated, as API clients are; before, the CSRF check of the fallback view
    # answered an HTML 403.
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {make_token(user)}")
    for path in ("/api/virtual-fitting/null,null", "/api/users/me/photos/abc"):
        response = client.delete(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"


# --- the traces an account leaves (issue 25, item 10) -----------------------------------------
def login(username: str, password: str, address: str) -> int:
    return (
        Client()
        .post(
            "/api/auth/token",
            {"username": username, "password": password},
            content_type="application/json",
            REMOTE_ADDR=address,
            HTTP_USER_AGENT="phone-app/1.0",
        )
        .status_code
    )


def erase(user) -> None:
    client = APIClient()
    client.force_authenticate(user)
    assert client.delete("/api/users/me").status_code == 204


def test_erasure_removes_the_login_attempts_under_the_username(settings, user, other_user):
    settings.AXES_ENABLE_ACCESS_FAILURE_LOG = True  # on here, so that its rows exist to be erased
    settings.AXES_DISABLE_ACCESS_LOG = False
    for username in ("alice", "bob"):
        assert login(username, "wrong", "10.0.0.7") == 400
        assert login(username, "pw-for-tests-123", "10.0.0.8") == 200
    for model in (AccessAttempt, AccessFailureLog, AccessLog):
        assert set(model.objects.values_list("username", flat=True)) == {"alice", "bob"}, model
    assert AccessAttempt.objects.filter(username="alice", ip_address="10.0.0.7", user_agent="phone-app/1.0").exists()
    erase(user)
    for model in (AccessAttempt, AccessFailureLog, AccessLog):
        assert set(model.objects.values_list("username", flat=True)) == {"bob"}, model


def test_erasure_removes_the_admin_log_entries_about_the_user_and_their_objects(
    user, other_user, photo, catalogue, staff_user
):
    job = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, webhook_url="https://hooks.example.com")
    delivery = WebhookDelivery.objects.create(
        job=job, event="fitting.completed", webhook_id="msg_a", url=job.webhook_url, payload="{}",
        retry_until=timezone.now(),
    )  # fmt: skip
    theirs = make_job(other_user, make_photo(other_user), catalogue["top"], status=Status.COMPLETED)
    for obj in (user, photo, job, delivery, other_user, theirs):
        LogEntry.objects.log_actions(
            user_id=staff_user.pk, queryset=[obj], action_flag=CHANGE, change_message="looked", single_object=True
        )
    kept = {(type(obj), str(obj.pk)) for obj in (other_user, theirs)}
    erase(user)
    left = {(entry.content_type.model_class(), entry.object_id) for entry in LogEntry.objects.all()}
    assert left == kept


def test_erasure_of_a_staff_member_removes_the_entries_they_made(user, other_user, staff_user):
    """Decided: what a staff member did in the admin goes with their account (Django's CASCADE)."""
    LogEntry.objects.log_actions(
        user_id=staff_user.pk, queryset=[other_user], action_flag=CHANGE, change_message="x", single_object=True
    )
    LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[other_user], action_flag=CHANGE, change_message="y", single_object=True
    )
    erase(get_user_model().objects.get(pk=staff_user.pk))
    assert list(LogEntry.objects.values_list("user_id", flat=True)) == [user.pk]


def test_erasure_removes_the_queues_task_rows_of_the_users_jobs(
    monkeypatch, settings, user, other_user, photo, catalogue, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(QConf, "SYNC", True)  # django-q2 runs a task at once and stores its result row
    with django_capture_on_commit_callbacks(execute=True):
        done = start_job(user, photo, catalogue["top"])
        theirs = start_job(other_user, make_photo(other_user), catalogue["top"])
    monkeypatch.setattr(QConf, "SYNC", False)
    with django_capture_on_commit_callbacks(execute=True):
        queued = start_job(user, make_photo(user), catalogue["bottom"])
        queued_theirs = start_job(other_user, make_photo(other_user), catalogue["bottom"])
    assert {t.name for t in Task.objects.all()} == {f"fitting-{done.id}-1", f"fitting-{theirs.id}-1"}
    assert Success.objects.filter(name=f"fitting-{done.id}-1").exists()
    assert sorted(row.task["name"] for row in OrmQ.objects.all()) == sorted(
        [f"fitting-{queued.id}-1", f"fitting-{queued_theirs.id}-1"]
    )
    erase(user)
    assert [t.name for t in Task.objects.all()] == [f"fitting-{theirs.id}-1"]
    assert [row.task["name"] for row in OrmQ.objects.all()] == [f"fitting-{queued_theirs.id}-1"]


def test_erasure_removes_the_users_rate_counters(
    user, other_user, photo, catalogue, django_capture_on_commit_callbacks
):
    def keys(user_id: int) -> list[str]:
        names = [f"throttle_{scope}_{user_id}" for scope in ("fitting_start", "photo_upload")]
        return [name for key in names for name in (key, f"{key}_started")]

    alice, bob = user.pk, other_user.pk  # the user's instance loses its pk when deleted

    cache.clear()
    for someone in (user, other_user):
        client = APIClient()
        client.force_authenticate(someone)
        upload = SimpleUploadedFile("me.jpg", image_bytes(fmt="JPEG"), content_type="image/jpeg")
        assert client.post("/api/users/me/photos", {"image": upload}, format="multipart").status_code == 201
        own_photo = UserImage.objects.filter(owner=someone).latest("id")
        assert client.post("/api/virtual-fitting", body(own_photo, catalogue["top"]), format="json").status_code == 202
        assert all(cache.get(key) is not None for key in keys(someone.pk)), keys(someone.pk)
    with django_capture_on_commit_callbacks(execute=True):
        erase(user)
    assert [key for key in keys(alice) if cache.get(key) is not None] == []
    assert all(cache.get(key) is not None for key in keys(bob))
    cache.clear()


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_per_user_rate_of_the_api_is_cleared_on_erasure():
    """USER_THROTTLE_SCOPES is the list erasure clears: a new per-user throttle must join it."""
    assert get_resolver().url_patterns  # every API module, and so every throttle class, imported
    # The throttles that name a scope of their own (not DRF's nor core's base classes).
    scopes = {throttle.scope for throttle in _subclasses(UserRateThrottle) if "scope" in vars(throttle)}
    assert scopes == set(USER_THROTTLE_SCOPES)
