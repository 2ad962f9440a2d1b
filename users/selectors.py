from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from core.media import media_name
from users.models import PHOTOS_DIR, UserImage, UserLimits


def photo_list(*, owner: AbstractBaseUser) -> QuerySet[UserImage]:
    return UserImage.objects.filter(owner=owner).order_by("-created_at", "-id")


def photo_get_by_url(*, owner: AbstractBaseUser, url: str) -> UserImage | None:
    """The caller's photo whose URL is ``url`` (any form ``media_name`` reads), or None.

    The stored name is random and unique, so matching the URL's object key is exact; a
    pre-signed URL matches with or without its signature.
    """
    name = media_name(url)
    if name is None or not name.startswith(f"{PHOTOS_DIR}/"):
        return None
    return photo_list(owner=owner).filter(image=name).first()


def photo_get(*, owner: AbstractBaseUser, photo_id: int) -> UserImage | None:
    return photo_list(owner=owner).filter(id=photo_id).first()


def user_daily_job_quota(*, user: AbstractBaseUser) -> int:
    """Fitting jobs a day ``user`` may start that call the engine; 0 means no limit.

    Staff's override (``UserLimits.daily_job_quota``) when set, else FITTING_DAILY_QUOTA.
    """
    override = UserLimits.objects.filter(user_id=user.pk).values_list("daily_job_quota", flat=True).first()
    return settings.FITTING_DAILY_QUOTA if override is None else override
