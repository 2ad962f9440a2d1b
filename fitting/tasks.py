"""django-q2 tasks. They take ids, never model instances, and are safe to run twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from fitting.models import FittingResult, Status
from fitting.services import enqueue_run

logger = logging.getLogger(__name__)

SWEEP_LOCK = "fitting:sweep-lock"


def run_fitting(job_id: str, attempt: int) -> None:
    from fitting.pipeline import run_job  # the pipeline (and its engine) load in workers only

    run_job(job_id=job_id, attempt=attempt)


def sweep_fittings() -> dict[str, int]:
    """End jobs whose worker died; enqueue again jobs whose queue message was lost.

    Runs every minute from a Schedule. Every write here is a conditional update, so two
    sweeps at once would still be correct; the lock only saves the duplicate work.
    """
    if not cache.add(SWEEP_LOCK, "1", timeout=50):
        return {"timedOut": 0, "requeued": 0, "skipped": 1}
    try:
        return {"timedOut": sweep_expired(), "requeued": requeue_lost(), "skipped": 0}
    finally:
        cache.delete(SWEEP_LOCK)


def sweep_expired() -> int:
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.FITTING_SWEEP_GRACE)
    expired = FittingResult.objects.filter(status=Status.PROCESSING, deadline_at__lt=cutoff).prefetch_related(
        "items", "images"
    )
    count = 0
    for job in expired:
        step = job.current_step or job.first_unfinished_step()
        count += FittingResult.objects.filter(id=job.id, attempt=job.attempt, status=Status.PROCESSING).update(
            status=Status.TIMEOUT,
            current_step=None,
            failed_step=step,
            error_code="TIMEOUT",
            error_message="The job did not finish before its deadline (its worker stopped or stalled).",
            finished_at=now,
            updated_at=now,
        )
    if count:
        logger.warning("sweep: %s job(s) ended as timeout", count)
    return count


def requeue_lost() -> int:
    now = timezone.now()
    stale = now - timedelta(seconds=settings.FITTING_REQUEUE_AFTER)
    lost = FittingResult.objects.filter(
        status=Status.PROCESSING, started_at__isnull=True, enqueued_at__lt=stale, deadline_at__gt=now
    ).values_list("id", "attempt", "enqueued_at")
    count = 0
    for job_id, attempt, enqueued_at in lost:
        # Only the sweep that moves enqueued_at enqueues; a late original is dropped by the claim.
        if FittingResult.objects.filter(id=job_id, enqueued_at=enqueued_at, started_at__isnull=True).update(
            enqueued_at=now
        ):
            enqueue_run(job_id=str(job_id), attempt=attempt)
            count += 1
    if count:
        logger.warning("sweep: %s job(s) enqueued again", count)
    return count


def purge_expired() -> dict[str, int]:
    """Hourly: delete what is past FITTING_RETENTION_DAYS (see fitting.retention)."""
    from fitting.retention import retention_purge

    return retention_purge()
