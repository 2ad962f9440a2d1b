from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile

from fitting import images
from fitting.errors import ImageInvalidError, ImageTooLargeError, ServiceError
from users.models import UserImage


def photo_create(*, owner: AbstractBaseUser, upload: UploadedFile) -> UserImage:
    """Store an uploaded person photo upright, re-encoded, under a random name.

    Re-encoding drops metadata (EXIF, GPS) and anything a crafted file carries besides
    its pixels, so what is served is always a plain JPEG or PNG.
    """
    if upload.size is None or upload.size == 0:
        raise ImageInvalidError(field="image")
    if upload.size > settings.UPLOAD_MAX_BYTES:
        raise ImageTooLargeError(field="image")
    try:
        decoded = images.decode(upload.read())
    except ServiceError as exc:
        exc.field = "image"
        raise
    data, extension = images.encode_upload(decoded)
    photo = UserImage(owner=owner, width=decoded.width, height=decoded.height, content_hash=images.sha256_hex(data))
    photo.image.save(f"photo.{extension}", ContentFile(data), save=False)
    photo.save()
    return photo
