from __future__ import annotations

from urllib.parse import unquote, urlparse

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from users.models import PHOTOS_DIR, UserImage


def photo_list(*, owner: AbstractBaseUser) -> QuerySet[UserImage]:
    return UserImage.objects.filter(owner=owner).order_by("-created_at", "-id")


def photo_get_by_url(*, owner: AbstractBaseUser, url: str) -> UserImage | None:
    """The caller's photo whose public URL is ``url``, or None.

    Clients send back the ``url`` we gave them, absolute or relative. The stored name
    is random and unique, so matching the path's tail to the storage name is exact.
    """
    path = unquote(urlparse(url).path)
    media_path = urlparse(settings.MEDIA_URL).path
    if path.startswith(media_path):
        name = path[len(media_path) :]
    else:
        name = "/".join(path.rsplit("/", 2)[-2:])
    if not name.startswith(f"{PHOTOS_DIR}/"):
        return None
    return photo_list(owner=owner).filter(image=name).first()


def photo_get(*, owner: AbstractBaseUser, photo_id: int) -> UserImage | None:
    return photo_list(owner=owner).filter(id=photo_id).first()
