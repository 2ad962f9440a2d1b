"""A job after its start: cancel it, end it when its worker died, enqueue it again, reprocess it."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from core.files import files_delete_unreferenced
from core.logcontext import log_context
from fitting import metrics, notify
from fitting.engines import can_run, engine_identity
from fitting.engines.identity import EngineIdentity, prompt_versions_of
from fitting.errors import (
    FailureCode,
    JobEngineMismatchError,
    JobFinishedError,
    JobPhotoDeletedError,
    NotReprocessableError,
)
from fitting.models import FittingResult, FittingResultImage, ImageStep, JobEvent, Status, StepAttempt
from fitting.services.progress import JobSuperseded, fitting_fail
from fitting.services.reuse import job_cache_key
from fitting.services.start import fitting_enqueue, fitting_enqueue_on_commit

logger = logging.getLogger(__name__)


@transaction.atomic
def fitting_cancel(*, job: FittingResult) -> FittingResult:
    """Cancel a processing job: ``status=canceled``, ``finished_at`` set; a canceled one is returned as is.

    A finished job (completed, failed, timed out) raises JobFinishedError. Queued or running
    alike: the worker's every write is conditional on the job still processing, so a worker
    that has not claimed it never starts it, and a running one stops at its next write, which
    comes before its next engine call; the answer of an engine call in flight is not stored
    (its file is deleted). ``current_step`` is cleared and ``failed_step`` stays null (nothing
    failed); the step images already made stay, so a reprocess naming the job resumes after them.
    """
    now = timezone.now()
    updated = FittingResult.objects.filter(id=job.id, status=Status.PROCESSING).update(
        status=Status.CANCELED, current_step=None, finished_at=now, updated_at=now
    )
    current = FittingResult.objects.filter(id=job.id).first()
    if current is None:  # deleted meanwhile: nothing to cancel (the API's re-read answers 404)
        return job
    if updated:
        metrics.count_job_ended(job=current, status=Status.CANCELED)
        notify.job_changed_on_commit(job_id=job.id, event=JobEvent.CANCELED)
        return current
    if current.status == Status.CANCELED:
        return current
    raise JobFinishedError()


def fitting_sweep_expired() -> int:
    """End as ``timeout`` the jobs still processing past their deadline plus the grace.

    The step they were in is recorded; a job whose attempt moved on meanwhile is left alone.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.FITTING_SWEEP_GRACE)
    expired = FittingResult.objects.filter(status=Status.PROCESSING, deadline_at__lt=cutoff).prefetch_related(
        "items", "images"
    )
    count = 0
    for job in expired:
        step = job.current_step or job.first_unfinished_step()
        with log_context(job_id=str(job.id), attempt=job.attempt, step=step, user_id=job.owner_id):
            try:
                fitting_fail(
                    job=job,
                    step=step,
                    code=FailureCode.TIMEOUT,
                    message="The job did not finish before its deadline (its worker stopped or stalled).",
                )
            except JobSuperseded:
                continue
            logger.warning("job %s: ended as timeout by the sweep (at %s)", job.id, step)
        count += 1
    if count:
        logger.warning("sweep: %s job(s) ended as timeout", count)
    return count


def fitting_requeue_lost() -> int:
    """Enqueue again the jobs never started ``FITTING_REQUEUE_AFTER`` after being enqueued.

    The Redis broker delivers at most once. Only the sweep that moves ``enqueued_at`` enqueues;
    a late original delivery is dropped by the claim.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.FITTING_REQUEUE_AFTER)
    lost = FittingResult.objects.filter(
        status=Status.PROCESSING, started_at__isnull=True, enqueued_at__lt=stale, deadline_at__gt=now
    ).values_list("id", "attempt", "enqueued_at")
    count = 0
    for job_id, attempt, enqueued_at in lost:
        if FittingResult.objects.filter(id=job_id, enqueued_at=enqueued_at, started_at__isnull=True).update(
            enqueued_at=now
        ):
            fitting_enqueue(job_id=str(job_id), attempt=attempt)
            count += 1
    if count:
        logger.warning("sweep: %s job(s) enqueued again", count)
    return count


def fitting_reprocess_switch(*, job: FittingResult, engine: str | None) -> EngineIdentity | None:
    """The identity a reprocess of ``job`` switches it to; None when it keeps its own.

    Without ``engine`` the job must be pinned to this process's engine (FITTING_ENGINE,
    its model and prompt version): otherwise JobEngineMismatchError, since running it here
    (or leaving it to workers configured like this process) would fail it as
    ENGINE_MISMATCH. With ``engine`` it is that engine's identity, if it differs.
    """
    if engine is None:
        if not can_run(job.engine_identity):
            here = engine_identity()
            raise JobEngineMismatchError(
                _("The job was made by %(job)s; this process runs %(here)s. Name the engine to switch to.")
                % {"job": job.engine_identity, "here": here}
            )
        return None
    # The job keeps its prompt version when the engine switched to has it (a new model, say).
    keep = job.prompt_version if job.prompt_version in prompt_versions_of(engine) else None
    target = engine_identity(engine, prompt_version=keep)
    return target if target != job.engine_identity else None


@transaction.atomic
def fitting_reprocess(
    *,
    job: FittingResult,
    restart: bool = False,
    enqueue: bool = True,
    engine: str | None = None,
    allow_canceled: bool = False,
) -> FittingResult:
    """Run a failed or timed-out job again, as a new attempt with a fresh time budget.

    A canceled job is run again only with ``allow_canceled``: when someone named it (the
    command's JOB_IDs, the admin's selection), never by a sweep over statuses.

    By default it resumes after the last finished step, reusing the step images already
    made; ``restart`` drops them and starts from the first step. With ``enqueue`` the new
    attempt goes to the queue once this commits; without, the caller runs it
    (``fitting.pipeline.run_job``). The admin actions and ``reprocess_failed_fittings``
    both come here.

    ``engine`` ("local", "gemini", "vertex-tryon") switches the job to that engine explicitly: its new
    identity (engine, model, prompt version) and cache key are recorded, and it restarts
    from scratch, since the earlier step images were made by the old engine. Without it,
    a job pinned to another engine than this process's is refused (see
    ``fitting_reprocess_switch``).
    """
    with log_context(job_id=str(job.id), attempt=job.attempt, user_id=job.owner_id):
        return _reprocess(job=job, restart=restart, enqueue=enqueue, engine=engine, allow_canceled=allow_canceled)


def _reprocess(
    *, job: FittingResult, restart: bool, enqueue: bool, engine: str | None, allow_canceled: bool
) -> FittingResult:
    if job.user_image_id is None:
        raise JobPhotoDeletedError()
    switch = fitting_reprocess_switch(job=job, engine=engine)
    restart = restart or switch is not None
    identity = switch or job.engine_identity
    now = timezone.now()
    job_images = FittingResultImage.objects.filter(job=job)
    if restart:
        _delete_images(job_images)
        # Its attempts stay for staff, but the candidates it answers are the new attempt's.
        StepAttempt.objects.filter(job=job).update(candidate_rank=None)
    else:
        _delete_images(job_images.filter(step=ImageStep.FINAL))
    statuses = Status.reprocessable(named=allow_canceled)
    updated = FittingResult.objects.filter(id=job.id, attempt=job.attempt, status__in=statuses).update(
        status=Status.PROCESSING,
        attempt=F("attempt") + 1,
        engine=identity.name,
        model=identity.model,
        prompt_version=identity.prompt_version,
        cache_key=job_cache_key(job, identity) if switch else job.cache_key,
        current_step=None,
        failed_step=None,
        error_code="",
        error_message="",
        llm_message=None,
        cached=False,
        step_metrics={} if restart else job.step_metrics,
        started_at=None,
        finished_at=None,
        enqueued_at=now,
        deadline_at=now + timedelta(seconds=settings.FITTING_JOB_TIMEOUT),
        updated_at=now,
    )
    if not updated:
        raise NotReprocessableError()
    job.refresh_from_db()
    logger.info("job %s: reprocessed as attempt %s (%s)", job.id, job.attempt, "restart" if restart else "resume")
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.REQUEUED)
    if enqueue:
        fitting_enqueue_on_commit(job=job)
    return job


def _delete_images(rows) -> None:
    """Delete image rows, and their files unless another row (a cached job) still uses them."""
    names = list(rows.values_list("image", flat=True))
    rows.delete()
    files_delete_unreferenced(names)
