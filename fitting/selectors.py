from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, QuerySet

from fitting.models import FittingResult, Item, Status


def item_list(*, category: str | None = None) -> QuerySet[Item]:
    items = Item.objects.filter(is_active=True)
    if category:
        items = items.filter(category=category)
    return items.order_by("category", "id")


def fitting_list(*, user: AbstractBaseUser) -> QuerySet[FittingResult]:
    """The user's jobs, newest first, with what the API shows prefetched (fixed query count)."""
    return FittingResult.objects.filter(owner=user).prefetch_related("items", "images").order_by("-created_at", "-id")


def fitting_get(*, user: AbstractBaseUser, job_id) -> FittingResult | None:
    return fitting_list(user=user).filter(id=job_id).first()


def fitting_is_current(*, job: FittingResult) -> bool:
    """Whether ``job`` is still processing as this attempt (not canceled, reprocessed or deleted).

    The pipeline asks before an engine call that no write of its own precedes (the message,
    an engine's retry): a job canceled meanwhile gets no further call.
    """
    return FittingResult.objects.filter(id=job.id, attempt=job.attempt, status=Status.PROCESSING).exists()


def fitting_failed_list(
    *,
    statuses: Iterable[str] = (Status.FAILED, Status.TIMEOUT),
    created_since: datetime | None = None,
    job_ids: Iterable[uuid.UUID] | None = None,
) -> QuerySet[FittingResult]:
    """Failed or timed-out jobs, oldest failure first, with what a reprocess report needs.

    Ordered by when each job last ended: a job that fails again moves to the back, so
    repeated ``--limit`` batches work through the whole backlog.
    """
    jobs = FittingResult.objects.filter(status__in=list(statuses))
    if created_since is not None:
        jobs = jobs.filter(created_at__gte=created_since)
    if job_ids is not None:
        jobs = jobs.filter(id__in=list(job_ids))
    return (
        jobs.select_related("owner")
        .prefetch_related("items", "images")
        .order_by(F("finished_at").asc(nulls_first=True), "created_at", "id")
    )
