"""Media served by the app itself (the embedded default): owner-only for photos and results.

Catalogue images are public. A person photo or a result image is served only to its owner
(a user who owns a row that points at it: a cached result's rows share files, each owner sees
theirs) and to staff who hold the view permission on the model the file belongs to. With
MEDIA_STORAGE=s3 this view is not mounted: the bucket is private and serves each file through
the pre-signed URL ``media_url`` hands out (config/storage.py).

The path is checked in the one form it is served in: a path that is not already normal (a
``..`` or ``.`` segment, an empty segment, a backslash, however it was percent-encoded on the
wire) is refused outright, so the decision and the file served can never differ.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.files.storage import default_storage
from django.db import models
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.views.static import serve
from rest_framework.exceptions import AuthenticationFailed

from core import images
from core.auth import request_user
from core.errors import ServiceError


@dataclass(frozen=True)
class MediaKind:
    """The files under one directory of the media storage: which rows name them, who may see them.

    Apps register theirs in ``AppConfig.ready()`` (``media_register``), so this module knows
    every kind without importing an app.
    """

    directory: str  # "photos": files are stored as "photos/<random>.jpg"
    model: type[models.Model]
    field: str = "image"
    owner_lookup: str | None = None  # from a row to the user who owns it; None: public
    staff_permissions: tuple[str, ...] = ()  # any of these lets staff see every file of the kind


_kinds: dict[str, MediaKind] = {}


def media_register(kind: MediaKind) -> None:
    _kinds[kind.directory] = kind


def media_kinds() -> list[MediaKind]:
    return list(_kinds.values())


def _user(request):
    try:
        return request_user(request)
    except AuthenticationFailed:
        return AnonymousUser()


def normal_path(path: str) -> str | None:
    """``path`` if it is a plain relative path with no tricks in it, else None."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return None
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return path if posixpath.normpath(path) == path else None


def _may_see(user, path: str) -> bool:
    kind = _kinds.get(path.split("/", 1)[0])
    if kind is None:
        return False
    if kind.owner_lookup is None:
        return True
    if not user.is_authenticated:
        return False
    if user.is_staff and any(user.has_perm(permission) for permission in kind.staff_permissions):
        return True
    return kind.model.objects.filter(**{kind.field: path, kind.owner_lookup: user}).exists()


def serve_media(request, path: str):
    path = normal_path(path)
    if path is None or not _may_see(_user(request), path):
        raise Http404
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    public = _kinds[path.split("/", 1)[0]].owner_lookup is None
    response["Cache-Control"] = "max-age=86400" if public else "private, max-age=3600"
    return response


# --- small renditions --------------------------------------------------------------------
THUMBNAIL_MAX_SIDE = 240  # twice the largest size the admin and the demo page show them at
THUMBNAIL_QUALITY = 80


def thumbnail_url(file) -> str:
    """The URL of a small rendition of a stored image (``serve_thumbnail``); "" when there is none."""
    return reverse("thumbnail", args=[file.name]) if file else ""


def serve_thumbnail(request, path: str):
    """A rendition of ``path`` at most THUMBNAIL_MAX_SIDE pixels, to whoever may see ``path``.

    Made on each request and never stored: a thumbnail of a photo is exactly as private as
    the photo (the same access check, the same caching headers), and erasing the photo
    leaves no copy behind. It reads through the storage, so it works on a bucket too. A JPEG
    is decoded at a reduced scale (``Image.draft``), so even a 4000-pixel photo is cheap.
    """
    path = normal_path(path)
    if path is None or not _may_see(_user(request), path):
        raise Http404
    try:
        with default_storage.open(path) as stored:
            data = stored.read()
        image = images.decode(data, max_side=THUMBNAIL_MAX_SIDE, max_bytes=max(len(data), 1))
    except (OSError, ServiceError) as exc:
        raise Http404 from exc
    buffer = io.BytesIO()
    if image.mode == "RGBA":  # a garment cut out on transparency stays so
        image.save(buffer, "PNG", optimize=True)
        content_type = "image/png"
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
        content_type = "image/jpeg"
    response = HttpResponse(buffer.getvalue(), content_type=content_type)
    public = _kinds[path.split("/", 1)[0]].owner_lookup is None
    response["Cache-Control"] = "max-age=86400" if public else "private, max-age=3600"
    return response


def media_url(file, request=None) -> str:
    """The URL a client fetches a stored file from: absolute when there is a request.

    The one place image URLs are made. Local files: ``MEDIA_URL`` + name, served by
    ``serve_media``. A bucket: the storage's own pre-signed URL, already absolute.
    """
    url = file.url
    return request.build_absolute_uri(url) if request is not None else url


def media_name(url: str) -> str | None:
    """The storage name (object key) of a file whose URL ``url`` is, or None.

    Clients send back URLs we gave them: ``/media/photos/x.jpg``, absolute or relative, or a
    bucket's pre-signed ``https://host/bucket/photos/x.jpg?X-Amz-...``, with the bucket in
    the path (path-style) or in the host (virtual-hosted). Scheme, host and query string (the
    signature) are ignored; stored names are ``<media directory>/<random file name>``, so the
    name is the path's last two segments, when the first of them is a media directory.
    """
    path = unquote(urlsplit(url).path)
    name = "/".join(path.rsplit("/", 2)[-2:])
    if name.split("/", 1)[0] not in _kinds:
        return None
    return normal_path(name)
