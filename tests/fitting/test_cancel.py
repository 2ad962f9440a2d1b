"""POST /api/virtual-fitting/<jobId>/cancel, and what a running worker does after it."""

from __future__ import annotations

import logging
import threading
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from fitting.models import FittingResult, JobEvent, Status
from fitting.services.lifecycle import fitting_cancel
from tests.e2e import wait_until
from tests.factories import make_job, run_now, running_in_a_worker, start_job
from tests.fakegemini import fail, hold, ok


def cancel_url(job) -> str:
    return f"/api/virtual-fitting/{job.id}/cancel"


# --- the API ------------------------------------------------------------------------------
def test_cancel_a_processing_job_answers_202_with_the_canceled_job(
    api, user, photo, catalogue, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG, logger="fitting.notify")
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(cancel_url(job))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["jobId"] == str(job.id)
    assert body["status"] == "canceled"
    assert body["currentStep"] is None and body["failedStep"] is None
    assert body["finishedAt"] is not None
    assert [s["status"] for s in body["steps"]] == ["pending", "pending"]
    job.refresh_from_db()
    assert (job.status, job.current_step, job.failed_step) == ("canceled", None, None)
    assert f"job {job.id}: {JobEvent.CANCELED}" in caplog.messages  # announced after the commit
    assert api.get(f"/api/virtual-fitting/{job.id}").json()["status"] == "canceled"


def test_cancelling_a_canceled_job_answers_202_again_and_changes_nothing(api, user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    first = api.post(cancel_url(job))
    again = api.post(cancel_url(job))
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()  # same finishedAt: not canceled a second time


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.TIMEOUT])
def test_cancelling_a_finished_job_is_409_job_finished(api, user, photo, catalogue, status):
    job = make_job(user, photo, catalogue["top"], status=status, failed_step="top" if status != "completed" else None)
    response = api.post(cancel_url(job))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "JOB_FINISHED"
    job.refresh_from_db()
    assert job.status == status


def test_another_users_job_is_404_and_stays_processing(api, other_user, catalogue):
    from tests.factories import make_photo

    job = start_job(other_user, make_photo(other_user), catalogue["top"])
    response = api.post(cancel_url(job))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    job.refresh_from_db()
    assert job.status == "processing"


def test_cancel_needs_authentication_and_post(client, api, user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    assert client.post(cancel_url(job)).status_code == 401
    assert api.get(cancel_url(job)).status_code == 405
    job.refresh_from_db()
    assert job.status == "processing"


def test_the_schema_documents_cancel_and_the_canceled_status(client, db):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    post = schema["paths"]["/api/virtual-fitting/{job_id}/cancel"]["post"]
    assert set(post["responses"]) == {"202", "401", "404", "409"}
    assert "JOB_FINISHED" in post["responses"]["409"]["description"]
    assert post["responses"]["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/Job")
    status = schema["components"]["schemas"]["Job"]["properties"]["status"]["$ref"].rsplit("/", 1)[-1]
    assert "canceled" in schema["components"]["schemas"][status]["enum"]


# --- the worker -----------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_job_canceled_before_a_worker_takes_it_never_calls_the_engine(fake_gemini, api, user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    assert api.post(cancel_url(job)).status_code == 202
    job = run_now(job)  # the queued delivery arrives after the cancel
    assert fake_gemini.requests == []
    assert (job.status, job.started_at, job.images.count()) == ("canceled", None, 0)


@pytest.mark.django_db(transaction=True)
def test_cancel_during_a_slow_step_stops_the_job_with_no_further_call(
    fake_gemini, api, user, photo, catalogue, media_root
):
    """Three steps; the bottom step's call is held in flight while the job is canceled."""
    gate = threading.Event()
    fake_gemini.script_image(ok(), hold(gate), ok())
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"], catalogue["outer"])

    with running_in_a_worker(job, gate):
        wait_until(lambda: len(fake_gemini.image_requests) == 2, timeout=60, what="the bottom step's call in flight")
        assert FittingResult.objects.get(id=job.id).current_step == "bottom"
        response = api.post(cancel_url(job))
        assert response.status_code == 202
        assert response.json()["status"] == "canceled"

    job.refresh_from_db()
    assert job.status == "canceled"
    assert len(fake_gemini.image_requests) == 2  # no outer call, the bottom call not repeated
    assert fake_gemini.text_requests == []  # no message either
    assert len(fake_gemini.outputs) == 2  # the held call did answer: its image was thrown away
    assert list(job.images.values_list("step", flat=True)) == ["top"]
    stored = sorted(p.name for p in (media_root / "results").iterdir())
    assert stored == [job.images.get(step="top").image.name.rsplit("/", 1)[-1]]  # no bottom file left behind
    detail = api.get(f"/api/virtual-fitting/{job.id}").json()
    assert detail["status"] == "canceled"
    assert [s["status"] for s in detail["steps"]] == ["completed", "pending", "pending"]
    assert detail["resultImageUrl"] is None


@pytest.mark.django_db(transaction=True)
def test_a_call_that_fails_after_the_cancel_is_not_retried(fake_gemini, api, user, photo, catalogue):
    """The held call answers 503, which the engine would retry: the cancel stops it first."""
    gate = threading.Event()
    fake_gemini.script_image(hold(gate, then=fail(503)), ok(), ok())
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])

    with running_in_a_worker(job, gate):
        wait_until(lambda: len(fake_gemini.image_requests) == 1, timeout=60, what="the top step's call in flight")
        assert api.post(cancel_url(job)).status_code == 202
    job.refresh_from_db()
    assert (job.status, job.error_code, job.failed_step) == ("canceled", "", None)
    assert len(fake_gemini.image_requests) == 1  # no retry of the failed call, no next step
    assert job.images.count() == 0


def test_fitting_cancel_of_a_finished_job_raises(user, photo, catalogue):
    from fitting.errors import JobFinishedError

    job = make_job(user, photo, catalogue["top"], status=Status.COMPLETED)
    with pytest.raises(JobFinishedError):
        fitting_cancel(job=job)


# --- reprocessing a canceled job: only when named -----------------------------------------
def reprocess(*args) -> str:
    out = StringIO()
    call_command("reprocess_failed_fittings", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def canceled_job(user, photo, catalogue):
    return make_job(
        user, photo, catalogue["top"], catalogue["bottom"], status=Status.CANCELED, done=["top"], error_code=""
    )


def test_reprocess_without_ids_leaves_canceled_jobs_alone(canceled_job):
    output = reprocess()
    assert output.strip() == "0 reprocessed (enqueued), 0 skipped, 0 not found"
    canceled_job.refresh_from_db()
    assert (canceled_job.status, canceled_job.attempt) == ("canceled", 1)


def test_status_canceled_needs_job_ids(canceled_job):
    with pytest.raises(CommandError, match="only when named"):
        reprocess("--status", "canceled")
    canceled_job.refresh_from_db()
    assert canceled_job.status == "canceled"


def test_a_named_canceled_job_resumes_after_its_last_finished_step(canceled_job):
    output = reprocess(str(canceled_job.id), "--sync")
    assert f"{canceled_job.id} canceled" in output
    assert "resumed from bottom, completed as attempt 2" in output
    canceled_job.refresh_from_db()
    assert (canceled_job.status, canceled_job.attempt) == ("completed", 2)


def test_a_named_canceled_job_is_skipped_when_status_leaves_it_out(canceled_job):
    with pytest.raises(CommandError):
        reprocess(str(canceled_job.id), "--status", "failed")
    canceled_job.refresh_from_db()
    assert canceled_job.status == "canceled"
