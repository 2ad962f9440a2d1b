from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from knox.models import AuthToken

from core import images
from core.errors import ImageInvalidError, ImageTooLargeError, QuotaExceededError, ServiceError
from core.files import file_delete_quietly, file_store_new
from users.models import UserImage


def _check_photo_quota(owner: AbstractBaseUser) -> None:
    if UserImage.objects.filter(owner=owner).count() >= settings.PHOTO_QUOTA:
        raise QuotaExceededError(
            _("You can keep at most %(count)d photos. Delete old photos first.") % {"count": settings.PHOTO_QUOTA}
        )


def photo_create(*, owner: AbstractBaseUser, upload: UploadedFile) -> UserImage:
    """Store an uploaded person photo upright, re-encoded, under a random name.

    Re-encoding drops metadata (EXIF, GPS) and anything a crafted file carries besides
    its pixels, so what is served is always a plain JPEG. The stored photo is the working
    size: its long side at most PHOTO_MAX_SIDE (never enlarged), its weight bounded (see
    ``images.encode_upload``); its width and height are the stored ones, the job's canvas.
    Each user keeps at most PHOTO_QUOTA photos. The file is written before its row and
    removed again if the row cannot be saved, so no failure leaves a file no row names.
    """
    if upload.size is None or upload.size == 0:
        raise ImageInvalidError(field="image")
    if upload.size > settings.UPLOAD_MAX_BYTES:
        raise ImageTooLargeError(field="image")
    _check_photo_quota(owner)  # early, so a user at the limit costs no decoding
    try:
        decoded = images.decode(
            upload.read(), max_side=settings.PHOTO_MAX_SIDE, max_aspect_ratio=images.PHOTO_MAX_ASPECT_RATIO
        )
    except ServiceError as exc:
        exc.field = "image"
        raise
    data, extension = images.encode_upload(decoded)
    photo = UserImage(owner=owner, width=decoded.width, height=decoded.height, content_hash=images.sha256_hex(data))
    del decoded
    file_store_new(photo.image, f"photo.{extension}", data)
    try:
        with transaction.atomic():
            # The owner's row is the lock: two uploads at once count one after the other.
            get_user_model().objects.select_for_update().filter(pk=owner.pk).exists()
            _check_photo_quota(owner)
            photo.save()
    except BaseException:
        file_delete_quietly(photo.image.storage, photo.image.name)
        raise
    return photo


def token_issue(*, user: AbstractBaseUser) -> tuple[AuthToken, str]:
    """A new API token for ``user``: (its row, its key). The key is known only here, once.

    The row holds a SHA-512 digest of the key, never the key; the token is valid for
    API_TOKEN_TTL from now (knox). Each login makes a token of its own, so logging in on one
    device does not log another out; the user's expired tokens are deleted on the way.
    """
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    return AuthToken.objects.create(user=user, expiry=settings.API_TOKEN_TTL)
