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


def fitting_with_details(*, job_id) -> FittingResult | None:
    """Any user's job with what the API shows prefetched (the event streams' one read of a change)."""
    return FittingResult.objects.filter(id=job_id).prefetch_related("items", "images").first()


def fitting_stamps(*, job_ids: Iterable) -> dict[str, datetime]:
    """``updated_at`` of each of ``job_ids`` that exists, by job id (str): one query for all."""
    rows = FittingResult.objects.filter(id__in=list(job_ids)).values_list("id", "updated_at")
    return {str(job_id): updated_at for job_id, updated_at in rows}


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
