"""Reuse of finished steps across jobs: a job starts from the longest prefix another job made."""

import threading

import pytest
from django.db import connection, transaction

from fitting.models import FittingResult, FittingResultImage
from fitting.services.lifecycle import fitting_reprocess
from tests.factories import make_photo, run_now, start_job
from tests.fakegemini import fail, ok


@pytest.fixture
def step_cache(settings):
    settings.FITTING_STEP_CACHE = True
    settings.FITTING_RESULT_CACHE_SCOPE = "owner"
    return settings


def _steps(api, job):
    return {s["category"]: s for s in api.get(f"/api/virtual-fitting/{job.id}").json()["steps"]}


def test_top_outer_after_top_bottom_makes_one_image_call(fake_gemini, step_cache, api, user, photo, catalogue):
    first = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert first.status == "completed"
    assert len(fake_gemini.image_requests) == 2

    second = run_now(start_job(user, make_photo(user), catalogue["top"], catalogue["outer"]))  # same photo content
    assert second.status == "completed", second.error_message
    assert len(fake_gemini.image_requests) == 3  # only outer
    assert fake_gemini.image_requests[-1].images[1].size == (48, 48)  # the garment sent was the coat's image
    assert not second.cached  # not a whole-result cache hit
    top = second.images.get(step="top")
    assert top.image.name == first.images.get(step="top").image.name  # shared, not copied
    assert second.step_metrics["top"] == {"cached": True, "source_job": str(first.id), "latency_ms": 0}
    steps = _steps(api, second)
    assert (steps["top"]["cached"], steps["outer"]["cached"]) == (True, False)
    assert steps["top"]["status"] == steps["outer"]["status"] == "completed"
    assert all(not s["cached"] for s in _steps(api, first).values())


def test_every_step_reused_still_writes_the_message(fake_gemini, step_cache, user, photo, catalogue):
    fake_gemini.script_image(ok(), fail(400, "bad garment"))
    failed = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert failed.status == "failed"
    calls = len(fake_gemini.image_requests)
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "completed"
    assert len(fake_gemini.image_requests) == calls  # no image call at all
    assert job.llm_message
    assert job.images.get(step="final").image.name == failed.images.get(step="top").image.name


def test_other_owners_steps_are_reused_only_with_global_scope(
    fake_gemini, step_cache, user, other_user, photo, catalogue
):
    run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    theirs = make_photo(other_user)  # the same picture, uploaded by someone else
    run_now(start_job(other_user, theirs, catalogue["top"], catalogue["outer"]))
    assert len(fake_gemini.image_requests) == 4  # owner scope: nothing shared

    step_cache.FITTING_RESULT_CACHE_SCOPE = "global"
    job = run_now(start_job(other_user, make_photo(other_user), catalogue["top"], catalogue["bottom"]))
    assert job.status == "completed"
    assert len(fake_gemini.image_requests) == 4  # both steps from the first user's job
    assert job.step_metrics["bottom"]["cached"] is True


def test_a_different_photo_or_garment_reuses_nothing(fake_gemini, step_cache, user, photo, catalogue):
    run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    other_photo = make_photo(user, color=(10, 200, 10))
    run_now(start_job(user, other_photo, catalogue["top"], catalogue["bottom"]))
    assert len(fake_gemini.image_requests) == 4
    run_now(start_job(user, photo, catalogue["bottom"], catalogue["outer"]))  # first step differs
    assert len(fake_gemini.image_requests) == 6


def test_no_reuse_across_engine_identity(fake_gemini, step_cache, user, photo, catalogue):
    run_now(start_job(user, photo, catalogue["top"]))
    step_cache.GEMINI_IMAGE_MODEL = "gemini-other-image"
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    assert job.images.count() == 0


def test_off_reuses_nothing(fake_gemini, step_cache, user, photo, catalogue):
    run_now(start_job(user, photo, catalogue["top"]))
    step_cache.FITTING_STEP_CACHE = False
    run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert len(fake_gemini.image_requests) == 3


def test_reprocess_keeps_reused_steps_and_restart_makes_them_again(fake_gemini, step_cache, user, photo, catalogue):
    source = run_now(start_job(user, photo, catalogue["top"]))
    fake_gemini.script_image(fail(400, "bad garment"))
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert (job.status, job.failed_step) == ("failed", "bottom")
    assert len(fake_gemini.image_requests) == 2  # top reused, bottom refused

    job = run_now(fitting_reprocess(job=job, enqueue=False))  # resume: bottom only
    assert job.status == "completed"
    assert len(fake_gemini.image_requests) == 3
    assert job.step_metrics["top"]["cached"] is True

    shared = source.images.get(step="top").image.name
    job.status = "failed"
    type(job).objects.filter(id=job.id).update(status="failed")
    job = run_now(fitting_reprocess(job=job, restart=True, enqueue=False))  # restart: every step made again
    assert job.status == "completed"
    assert len(fake_gemini.image_requests) == 5
    assert "cached" not in job.step_metrics["top"]
    assert FittingResultImage.objects.filter(image=shared).exists()  # the source keeps its file
    assert source.images.get(step="top").image.storage.exists(shared)


@pytest.mark.django_db(transaction=True)
def test_a_source_job_being_deleted_is_not_reused(fake_gemini, step_cache, user, photo, catalogue):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: a deletion cannot be in flight during a start")
    source = run_now(start_job(user, photo, catalogue["top"]))
    locked, release = threading.Event(), threading.Event()

    def delete_in_flight():  # what fitting_delete holds until its commit
        try:
            with transaction.atomic():
                list(FittingResult.objects.select_for_update().filter(id=source.id))
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=delete_in_flight)
    thread.start()
    try:
        assert locked.wait(30)
        job = start_job(user, photo, catalogue["top"], catalogue["bottom"])  # neither waits nor deadlocks
        assert job.images.count() == 0
    finally:
        release.set()
        thread.join()
    assert start_job(user, photo, catalogue["top"], catalogue["outer"]).images.count() == 1  # free again
