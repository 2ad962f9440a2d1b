"""``reprocess_failed_fittings``: selection, dry run, enqueue, and --sync against the fake Gemini."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_q.models import OrmQ

from fitting.models import FittingResult, Status
from fitting.pipeline import run_job
from fitting.prompts import step_prompt
from tests.factories import make_job
from tests.fakegemini import fail, ok

COMMAND = "reprocess_failed_fittings"


def reprocess(*args) -> str:
    out = StringIO()
    call_command(COMMAND, *args, stdout=out)
    return out.getvalue()


def reprocess_failing(*args) -> tuple[str, CommandError]:
    out = StringIO()
    with pytest.raises(CommandError) as error:
        call_command(COMMAND, *args, stdout=out)
    return out.getvalue(), error.value


def job_lines(output: str) -> dict[str, str]:
    """Each job line by job id (the summary line has no id)."""
    lines = output.strip().splitlines()
    return {line.split(" ", 1)[0]: line for line in lines[:-1]}


def summary(output: str) -> str:
    return output.strip().splitlines()[-1]


@pytest.fixture
def jobs(user, photo, catalogue):
    now = timezone.now()
    top, bottom = catalogue["top"], catalogue["bottom"]
    return {
        "failed": make_job(
            user,
            photo,
            top,
            bottom,
            failed_step="bottom",
            done=["top"],
            finished_at=now - timedelta(minutes=30),
        ),
        "timeout": make_job(
            user,
            photo,
            top,
            status=Status.TIMEOUT,
            failed_step="top",
            error_code="TIMEOUT",
            finished_at=now - timedelta(minutes=20),
        ),
        "old": make_job(
            user,
            photo,
            top,
            failed_step="top",
            created_at=now - timedelta(hours=5),
            finished_at=now - timedelta(minutes=10),
        ),
        "completed": make_job(user, photo, top, status=Status.COMPLETED, done=["top", "final"]),
        "processing": make_job(user, photo, top, status=Status.PROCESSING),
    }


def ids(*jobs) -> set[str]:
    return {str(job.id) for job in jobs}


# --- selection ------------------------------------------------------------------------------
def test_selects_failed_and_timed_out_jobs_oldest_failure_first(jobs):
    output = reprocess("--dry-run")
    lines = output.strip().splitlines()
    assert [line.split(" ", 1)[0] for line in lines[:-1]] == [
        str(jobs["failed"].id),
        str(jobs["timeout"].id),
        str(jobs["old"].id),
    ]
    failed = job_lines(output)[str(jobs["failed"].id)]
    assert failed == f"{jobs['failed'].id} failed failed_step=bottom code=ENGINE_REJECTED -> would resume from bottom"
    assert job_lines(output)[str(jobs["timeout"].id)].endswith(
        "timeout failed_step=top code=TIMEOUT -> would resume from top"
    )
    assert summary(output) == "dry run: 3 would be reprocessed, 0 skipped, 0 not found; nothing written"


def test_status_since_and_limit_narrow_the_selection(jobs):
    assert set(job_lines(reprocess("--dry-run", "--status", "timeout"))) == ids(jobs["timeout"])
    assert set(job_lines(reprocess("--dry-run", "--status", "failed"))) == ids(jobs["failed"], jobs["old"])
    assert set(job_lines(reprocess("--dry-run", "--since", "2"))) == ids(jobs["failed"], jobs["timeout"])
    assert set(job_lines(reprocess("--dry-run", "--since", "6"))) == ids(jobs["failed"], jobs["timeout"], jobs["old"])
    # oldest failure first: the job that ended first
    assert set(job_lines(reprocess("--dry-run", "--limit", "1"))) == ids(jobs["failed"])
    assert set(job_lines(reprocess("--dry-run", "--limit", "2", "--status", "failed"))) == ids(
        jobs["failed"], jobs["old"]
    )


def test_job_ids_restrict_the_selection(jobs):
    output = reprocess("--dry-run", str(jobs["timeout"].id))
    assert set(job_lines(output)) == ids(jobs["timeout"])
    assert summary(output).startswith("dry run: 1 would be reprocessed")


def test_unknown_or_unreprocessable_job_ids_are_reported_and_fail_the_command(jobs):
    unknown = "00000000-0000-4000-8000-000000000000"
    output, error = reprocess_failing(
        "--dry-run", str(jobs["failed"].id), str(jobs["completed"].id), unknown, "not-a-uuid"
    )
    lines = job_lines(output)
    assert lines[unknown] == f"{unknown} -> not found"
    assert lines["not-a-uuid"] == "not-a-uuid -> not found"
    assert lines[str(jobs["completed"].id)].endswith(
        "completed -> skipped: not reprocessable (only failed, timed-out or canceled jobs are)"
    )
    assert lines[str(jobs["failed"].id)].endswith("-> would resume from bottom")
    assert summary(output) == "dry run: 1 would be reprocessed, 1 skipped, 2 not found; nothing written"
    assert error.returncode == 1
    assert unknown in str(error) and str(jobs["completed"].id) in str(error)


@pytest.mark.parametrize("form", ["admin", "upper", "hyphenated-13", "hex-12"])
def test_a_job_is_named_by_the_id_prefix_the_admin_shows(jobs, form):
    job = jobs["timeout"]
    text = str(job.id)
    prefix = {
        "admin": text[:8],  # the short id of the admin's job list
        "upper": text[:8].upper(),
        "hyphenated-13": text[:13],
        "hex-12": job.id.hex[:12],
    }[form]
    output = reprocess("--dry-run", prefix)
    assert set(job_lines(output)) == ids(job)
    assert summary(output).startswith("dry run: 1 would be reprocessed")


def test_an_ambiguous_prefix_is_refused_listing_its_matches_and_nothing_is_done(
    jobs, user, photo, catalogue, django_capture_on_commit_callbacks
):
    first, second = (
        make_job(user, photo, catalogue["top"], failed_step="top", id=uuid.UUID(f"abcdef01-{n}-4000-8000-{n}00000000"))
        for n in ("1111", "2222")
    )
    with django_capture_on_commit_callbacks(execute=True):
        output, error = reprocess_failing("abcdef01", str(jobs["failed"].id))
    assert "ambiguous" in str(error)
    assert str(first.id) in str(error) and str(second.id) in str(error)
    assert output == ""
    assert OrmQ.objects.count() == 0
    assert set(FittingResult.objects.values_list("attempt", flat=True)) == {1}
    # Its unambiguous form works.
    assert set(job_lines(reprocess("--dry-run", "abcdef01-2"))) == {str(second.id)}


def test_a_prefix_that_matches_nothing_or_is_too_short_is_not_found(jobs):
    short = str(jobs["failed"].id)[:7]
    output, error = reprocess_failing("--dry-run", "ffffffff", short)
    lines = job_lines(output)
    assert lines["ffffffff"] == "ffffffff -> not found"
    assert lines[short] == f"{short} -> not found"
    assert error.returncode == 1


def test_a_named_job_left_out_by_the_filters_is_reported(jobs):
    output, _ = reprocess_failing(str(jobs["timeout"].id), "--dry-run", "--status", "failed")
    assert job_lines(output)[str(jobs["timeout"].id)].endswith(
        "timeout -> skipped: not selected by --status/--since/--limit"
    )


def test_dry_run_writes_nothing(jobs, django_capture_on_commit_callbacks):
    before = list(FittingResult.objects.order_by("id").values())
    images_before = {job.id: list(job.images.values_list("id", flat=True)) for job in jobs.values()}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        reprocess("--dry-run", "--restart")
    assert callbacks == []
    assert list(FittingResult.objects.order_by("id").values()) == before
    assert {job.id: list(job.images.values_list("id", flat=True)) for job in jobs.values()} == images_before
    assert OrmQ.objects.count() == 0


def test_without_sync_jobs_are_enqueued_as_a_new_attempt(jobs, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        output = reprocess("--status", "failed")
    assert job_lines(output)[str(jobs["failed"].id)].endswith("-> resumed from bottom, enqueued as attempt 2")
    assert summary(output) == "2 reprocessed (enqueued), 0 skipped, 0 not found"
    assert sorted(q.task["args"] for q in OrmQ.objects.all()) == sorted(
        [(str(jobs["failed"].id), 2), (str(jobs["old"].id), 2)]
    )
    for name in ("failed", "old"):
        job = FittingResult.objects.get(id=jobs[name].id)
        assert (job.status, job.attempt, job.started_at) == ("processing", 2, None)
    assert FittingResult.objects.get(id=jobs["timeout"].id).status == "timeout"
    assert list(jobs["failed"].images.values_list("step", flat=True)) == ["top"]


def test_sync_runs_the_jobs_here_on_the_local_engine(jobs):
    output = reprocess("--sync")
    assert summary(output) == "3 reprocessed, 3 completed, 0 failed again, 0 skipped, 0 not found"
    assert job_lines(output)[str(jobs["timeout"].id)].endswith("-> resumed from top, completed as attempt 2")
    for name in ("failed", "timeout", "old"):
        job = FittingResult.objects.get(id=jobs[name].id)
        assert (job.status, job.attempt) == ("completed", 2)
    assert OrmQ.objects.count() == 0
    assert reprocess("--sync").strip() == "0 reprocessed, 0 completed, 0 failed again, 0 skipped, 0 not found"


# --- against the fake Gemini server ---------------------------------------------------------
@pytest.fixture
def failed_at_bottom(fake_gemini, user, photo, catalogue):
    """A three-step job that really ran and failed at bottom: top's image is stored."""
    fake_gemini.script_image(ok(), fail(400, "bad garment"))
    job = make_job(user, photo, catalogue["top"], catalogue["bottom"], catalogue["outer"], status=Status.PROCESSING)
    run_job(job_id=str(job.id), attempt=1)
    job.refresh_from_db()
    assert (job.status, job.failed_step, job.error_code) == ("failed", "bottom", "ENGINE_REJECTED")
    assert len(fake_gemini.image_requests) == 2
    return job


def steps_asked(requests) -> list[str]:
    prompts = {step_prompt(step): step for step in ("top", "bottom", "outer")}
    return [prompts[request.texts[0]] for request in requests]


def test_sync_resume_makes_only_the_remaining_engine_calls(fake_gemini, failed_at_bottom):
    job = failed_at_bottom
    top_row = job.images.get(step="top")
    output = reprocess(str(job.id), "--sync")
    assert job_lines(output)[str(job.id)] == (
        f"{job.id} failed failed_step=bottom code=ENGINE_REJECTED -> resumed from bottom, completed as attempt 2"
    )
    assert summary(output) == "1 reprocessed, 1 completed, 0 failed again, 0 skipped, 0 not found"
    assert steps_asked(fake_gemini.image_requests[2:]) == ["bottom", "outer"]
    job.refresh_from_db()
    assert (job.status, job.attempt, job.failed_step) == ("completed", 2, None)
    again = job.images.get(step="top")
    assert (again.id, again.image.name) == (top_row.id, top_row.image.name)
    assert sorted(job.images.values_list("step", flat=True)) == ["bottom", "final", "outer", "top"]


def test_sync_restart_redoes_every_step(fake_gemini, failed_at_bottom):
    job = failed_at_bottom
    top_row = job.images.get(step="top")
    output = reprocess(str(job.id), "--sync", "--restart")
    assert job_lines(output)[str(job.id)].endswith("-> restarted, completed as attempt 2")
    assert steps_asked(fake_gemini.image_requests[2:]) == ["top", "bottom", "outer"]
    job.refresh_from_db()
    assert job.status == "completed"
    assert job.images.get(step="top").id != top_row.id


def test_sync_exits_non_zero_when_a_job_fails_again(fake_gemini, failed_at_bottom):
    job = failed_at_bottom
    fake_gemini.script_image(fail(400, "still bad"))
    output, error = reprocess_failing("--sync")
    assert job_lines(output)[str(job.id)].endswith(
        "-> resumed from bottom, FAILED again: ENGINE_REJECTED at bottom (attempt 2)"
    )
    assert summary(output) == "1 reprocessed, 0 completed, 1 failed again, 0 skipped, 0 not found"
    assert error.returncode == 1 and "1 job(s) failed again" in str(error)
    assert steps_asked(fake_gemini.image_requests[2:]) == ["bottom"]
    job.refresh_from_db()
    assert (job.status, job.attempt, job.failed_step) == ("failed", 2, "bottom")
    assert list(job.images.values_list("step", flat=True)) == ["top"]
