from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import CharField, F, QuerySet, Value
from django.db.models.functions import Cast, Replace

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


def fitting_with_id_prefix(jobs: QuerySet[FittingResult], digits: str) -> QuerySet[FittingResult]:
    """The jobs of ``jobs`` whose id starts with ``digits`` (lowercase hex, no hyphens)."""
    if len(digits) == 32:
        return jobs.filter(id=uuid.UUID(digits))  # the primary key index
    # PostgreSQL's text form of a uuid has hyphens, SQLite stores 32 hex digits: compare
    # both without hyphens.
    id_hex = Replace(Cast("id", output_field=CharField()), Value("-"), Value(""))
    return jobs.filter(
        id__in=FittingResult.objects.annotate(id_hex=id_hex).filter(id_hex__startswith=digits).values("id")
    )
