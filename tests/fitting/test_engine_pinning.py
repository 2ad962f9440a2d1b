"""A job is pinned to the engine, model and prompt version it was created with.

A worker configured otherwise fails it as ENGINE_MISMATCH before making anything; only an
explicit reprocess (``engine=``, ``--engine``) switches it, recording the new identity and
cache key. The result cache only reuses a job of the request's own identity.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from fitting.engines import engine_identity
from fitting.errors import FailureCode, JobEngineMismatchError, job_error_message
from fitting.models import FittingResult, FittingResultImage, Status
from fitting.services.lifecycle import fitting_reprocess
from tests.factories import make_job, run_now, start_job


def as_local(settings) -> None:
    """This process (a worker, a shell) configured for the local engine, as without FITTING_ENGINE."""
    settings.FITTING_ENGINE = "local"


def identity(job: FittingResult) -> tuple[str, str, str]:
    job.refresh_from_db()
    return job.engine, job.model, job.prompt_version


# --- the worker refuses ---------------------------------------------------------------------
def test_a_gemini_job_run_by_a_local_worker_fails_as_engine_mismatch_and_stores_nothing(
    fake_gemini, user, photo, catalogue, settings
):
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    gemini = identity(job)
    assert gemini[0] == "gemini"
    as_local(settings)  # e.g. `reprocess_failed_fittings --sync` in a shell without FITTING_ENGINE

    job = run_now(job)

    assert (job.status, job.error_code, job.failed_step) == (Status.FAILED, FailureCode.ENGINE_MISMATCH, "top")
    assert identity(job) == gemini  # still labelled with what it was made for, and nothing was made
    assert "gemini" in job.error_message and "this worker runs local" in job.error_message
    assert not FittingResultImage.objects.exists()
    assert fake_gemini.requests == []
    with translation.override("en"):
        assert (
            job_error_message(job.error_code) == "The job was made for another image engine than the one running now."
        )


def test_the_cache_never_serves_a_job_refused_by_the_wrong_worker(fake_gemini, user, photo, catalogue, settings):
    job = start_job(user, photo, catalogue["top"])
    as_local(settings)
    run_now(job)
    settings.FITTING_RESULT_CACHE = True
    for engine in ("local", "gemini"):
        settings.FITTING_ENGINE = engine
        again = start_job(user, photo, catalogue["top"])
        assert (again.status, again.cached) == (Status.PROCESSING, False), engine


def test_a_worker_with_another_image_model_refuses_a_job_made_for_the_first(
    fake_gemini, user, photo, catalogue, settings
):
    settings.GEMINI_IMAGE_MODEL = "gemini-2.5-flash-image"
    job = start_job(user, photo, catalogue["top"])
    settings.GEMINI_IMAGE_MODEL = "gemini-3-pro-image-preview"

    job = run_now(job)

    assert (job.status, job.error_code) == (Status.FAILED, FailureCode.ENGINE_MISMATCH)
    assert job.model == "gemini-2.5-flash-image"
    assert fake_gemini.requests == []


def test_a_resumed_job_is_refused_by_a_worker_of_another_engine_and_keeps_its_steps(
    fake_gemini, user, photo, catalogue, settings
):
    job = make_job(user, photo, catalogue["top"], catalogue["bottom"], failed_step="bottom", done=["top"])
    job = fitting_reprocess(job=job, enqueue=False)  # this process runs gemini: resumes at bottom
    as_local(settings)

    job = run_now(job)

    assert (job.status, job.error_code, job.failed_step) == (Status.FAILED, FailureCode.ENGINE_MISMATCH, "bottom")
    assert sorted(job.images.values_list("step", flat=True)) == ["top"]
    assert fake_gemini.requests == []


# --- reprocess switches explicitly ------------------------------------------------------------
def test_reprocess_without_an_engine_refuses_a_job_pinned_to_another_engine(
    fake_gemini, user, photo, catalogue, settings
):
    job = make_job(user, photo, catalogue["top"], failed_step="top")
    as_local(settings)
    with pytest.raises(JobEngineMismatchError) as refused:
        fitting_reprocess(job=job, enqueue=False)
    assert "gemini" in refused.value.message and "local" in refused.value.message
    job.refresh_from_db()
    assert (job.status, job.attempt, job.engine) == (Status.FAILED, 1, "gemini")


def test_reprocess_with_engine_local_records_local_restarts_and_its_result_is_cached_as_local(
    fake_gemini, user, photo, catalogue, settings
):
    job = make_job(user, photo, catalogue["top"], catalogue["bottom"], failed_step="bottom", done=["top"])
    gemini_key = start_job(user, photo, catalogue["top"], catalogue["bottom"]).cache_key
    as_local(settings)

    job = fitting_reprocess(job=job, enqueue=False, engine="local")

    local = engine_identity("local")
    assert identity(job) == (local.name, local.model, local.prompt_version)
    assert job.cache_key and job.cache_key != gemini_key
    assert not job.images.exists()  # the top step was made by Gemini: restarted from scratch
    assert job.step_metrics == {}
    calls = len(fake_gemini.requests)
    job = run_now(job)
    assert job.status == Status.COMPLETED, job.error_message
    assert len(fake_gemini.requests) == calls  # made by the local engine, as labelled

    settings.FITTING_RESULT_CACHE = True
    same_locally = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    assert (same_locally.status, same_locally.cached) == (Status.COMPLETED, True)
    settings.FITTING_ENGINE = "gemini"
    same_on_gemini = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    assert (same_on_gemini.status, same_on_gemini.cached) == (Status.PROCESSING, False)


def test_the_cache_reuses_only_a_job_whose_stored_identity_is_the_requests(user, photo, catalogue, settings):
    settings.FITTING_RESULT_CACHE = True
    first = start_job(user, photo, catalogue["top"])
    run_now(first)
    # A row whose stored key no longer matches its identity (say, relabelled by hand): never trusted.
    FittingResult.objects.filter(id=first.id).update(engine="gemini")
    again = start_job(user, photo, catalogue["top"])
    assert (again.status, again.cached) == (Status.PROCESSING, False)


# --- the command ------------------------------------------------------------------------------
def command(*args) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("reprocess_failed_fittings", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_the_command_refuses_a_job_pinned_to_another_engine_with_a_clear_line(
    fake_gemini, user, photo, catalogue, settings
):
    job = make_job(user, photo, catalogue["top"], failed_step="top")
    as_local(settings)

    out, error = command("--sync")

    line = next(line for line in out.splitlines() if line.startswith(str(job.id)))
    assert "refused: pinned to gemini" in line and "this process runs local" in line and "--engine NAME" in line
    assert error is not None and "pinned to another engine" in str(error)
    job.refresh_from_db()
    assert (job.status, job.attempt, job.engine) == (Status.FAILED, 1, "gemini")
    assert fake_gemini.requests == []


def test_the_command_switches_to_the_engine_it_is_given(fake_gemini, user, photo, catalogue, settings):
    job = make_job(user, photo, catalogue["top"], catalogue["bottom"], failed_step="bottom", done=["top"])
    as_local(settings)

    dry, _ = command("--engine", "local", "--dry-run")
    assert f"{job.id} failed failed_step=bottom code=ENGINE_REJECTED engine gemini->local -> would restart" in dry
    out, error = command("--engine", "local", "--sync")

    assert error is None, out
    assert "engine gemini->local -> restarted, completed as attempt 2" in out
    job.refresh_from_db()
    assert (job.status, job.engine, job.model) == (Status.COMPLETED, "local", "local-preview-1")
    assert fake_gemini.requests == []


def test_the_command_runs_a_job_with_the_engine_it_names_without_switching_it(
    fake_gemini, user, photo, catalogue, settings
):
    job = make_job(user, photo, catalogue["top"], catalogue["bottom"], failed_step="bottom", done=["top"])
    as_local(settings)  # the shell lacks FITTING_ENGINE, the operator says which engine

    out, error = command("--engine", "gemini", "--sync")

    assert error is None, out
    assert "resumed from bottom, completed as attempt 2" in out
    job.refresh_from_db()
    assert (job.status, job.engine) == (Status.COMPLETED, "gemini")
    assert len(fake_gemini.image_requests) == 1  # only the bottom step: top was kept
