"""The owner's rating of a completed job: set (or replace) it, remove it."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from core.logcontext import log_context
from fitting import notify
from fitting.errors import JobNotCompletedError
from fitting.models import FittingRating, FittingResult, JobEvent, RatingReason, Status

logger = logging.getLogger(__name__)


def _lock_job(job: FittingResult) -> FittingResult | None:
    """The job's row, locked until the transaction ends (a deletion waits for the rating); None when gone."""
    return FittingResult.objects.select_for_update(no_key=True).filter(id=job.id).first()


@transaction.atomic
def fitting_rate(
    *, job: FittingResult, score: int, reasons: Iterable[str] = (), comment: str = ""
) -> FittingRating | None:
    """Rate ``job`` for its owner: one rating per job, a second one replaces the first.

    Only a completed job can be rated (JobNotCompletedError). ``reasons`` are
    ``RatingReason`` values, stored once each in the list's order. Announced as
    ``fitting.rated`` (webhooks that subscribed to it). None when the job was deleted meanwhile.
    """
    locked = _lock_job(job)
    if locked is None:
        return None
    if locked.status != Status.COMPLETED:
        raise JobNotCompletedError()
    wanted = set(reasons)
    rating, created = FittingRating.objects.update_or_create(
        job=locked,
        defaults={
            "score": score,
            "reasons": [reason for reason in RatingReason.values if reason in wanted],
            "comment": comment,
        },
    )
    with log_context(job_id=str(job.id), user_id=job.owner_id):
        logger.info("job %s: rated %s (%s)", job.id, score, "new" if created else "replaced")
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.RATED)
    return rating


@transaction.atomic
def fitting_rating_delete(*, job: FittingResult) -> bool:
    """Remove ``job``'s rating; announced as ``fitting.rated`` (its ``rating`` then null). False when it had none."""
    if _lock_job(job) is None:
        return False
    deleted, _ = FittingRating.objects.filter(job_id=job.id).delete()
    if deleted:
        notify.job_changed_on_commit(job_id=job.id, event=JobEvent.RATED)
    return bool(deleted)
