from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from fitting.models import FittingResult, Item


def item_list(*, category: str | None = None) -> QuerySet[Item]:
    items = Item.objects.filter(is_active=True)
    if category:
        items = items.filter(category=category)
    return items.order_by("category", "id")


def fitting_list(*, user: AbstractBaseUser) -> QuerySet[FittingResult]:
    """The user's jobs, newest first, with what the API shows prefetched (fixed query count)."""
    return (
        FittingResult.objects.filter(owner=user)
        .prefetch_related("items", "images")
        .order_by("-created_at", "-id")
    )


def fitting_get(*, user: AbstractBaseUser, job_id) -> FittingResult | None:
    return fitting_list(user=user).filter(id=job_id).first()
