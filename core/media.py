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
import math
import posixpath
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import models
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.views.static import serve
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.throttling import SimpleRateThrottle

from core import images
from core.auth import request_user
from core.errors import ErrorCode, ServiceError
from core.exceptions import error_body


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
# Renditions are stored in the media storage under this directory, at the image's own name
# ("thumbs/items/x.png" for "items/x.png"): no media kind is registered for it, so
# ``serve_media`` never serves one, and only ``serve_thumbnail`` reads them.
THUMBNAIL_DIRECTORY = "thumbs"


def thumbnail_name(name: str) -> str:
    """The storage name of the rendition of the stored image ``name``."""
    return f"{THUMBNAIL_DIRECTORY}/{name}"


def thumbnail_source(name: str) -> str | None:
    """The stored image whose rendition ``name`` is, or None if ``name`` is no rendition."""
    prefix = f"{THUMBNAIL_DIRECTORY}/"
    return name[len(prefix) :] if name.startswith(prefix) else None


def thumbnail_url(file) -> str:
    """The URL of a small rendition of a stored image (``serve_thumbnail``); "" when there is none."""
    return reverse("thumbnail", args=[file.name]) if file else ""


class AnonymousThumbnailThrottle(SimpleRateThrottle):
    """THUMBNAIL_ANON_RATE per client address for anonymous requests (empty: no limit)."""

    scope = "anonymous-thumbnails"

    def get_rate(self) -> str | None:
        return settings.THUMBNAIL_ANON_RATE or None

    def get_cache_key(self, request, view) -> str:
        # The address the login limits use: TRUSTED_PROXY_COUNT decides whose header is believed.
        return self.cache_format % {"scope": self.scope, "ident": get_client_ip_address(request)}


def _throttled(request) -> JsonResponse | None:
    throttle = AnonymousThumbnailThrottle()
    if throttle.allow_request(request, None):
        return None
    response = JsonResponse(error_body(ErrorCode.THROTTLED, str(_("Too many requests. Try again later."))), status=429)
    response["Retry-After"] = str(max(1, math.ceil(throttle.wait() or 1)))
    return response


def serve_thumbnail(request, path: str):
    """A rendition of ``path`` at most THUMBNAIL_MAX_SIDE pixels, to whoever may see ``path``.

    Made once, on the first request, and kept in the media storage beside the images
    (``thumbnail_name``), so it works on a bucket too; it is deleted with its image
    (``core.files``). A thumbnail of a photo is exactly as private as the photo: the same
    access check, the same caching headers, and never served from anywhere else. Anonymous
    requests (catalogue images) are limited to THUMBNAIL_ANON_RATE per address: 429
    THROTTLED with Retry-After.
    """
    user = _user(request)
    if not user.is_authenticated and (throttled := _throttled(request)):
        return throttled
    path = normal_path(path)
    if path is None or not _may_see(user, path):
        raise Http404
    try:
        data = _stored_thumbnail(path) or _make_thumbnail(path)
    except (OSError, ServiceError) as exc:
        raise Http404 from exc
    content_type = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    response = HttpResponse(data, content_type=content_type)
    public = _kinds[path.split("/", 1)[0]].owner_lookup is None
    response["Cache-Control"] = "max-age=86400" if public else "private, max-age=3600"
    return response


def _stored_thumbnail(path: str) -> bytes | None:
    try:
        with default_storage.open(thumbnail_name(path)) as stored:
            return stored.read()
    except OSError:  # FileNotFoundError among them: not made yet
        return None


def _make_thumbnail(path: str) -> bytes:
    """Render ``path``'s thumbnail and store it; two requests at once store one of theirs."""
    with default_storage.open(path) as stored:
        data = stored.read()
    image = images.decode(data, max_side=THUMBNAIL_MAX_SIDE, max_bytes=max(len(data), 1))
    buffer = io.BytesIO()
    if image.mode == "RGBA":  # a garment cut out on transparency stays so
        image.save(buffer, "PNG", optimize=True)
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    rendition = buffer.getvalue()
    name = thumbnail_name(path)
    saved = default_storage.save(name, ContentFile(rendition))
    if saved != name:  # another request stored it first: keep theirs, drop this copy
        default_storage.delete(saved)
    elif not default_storage.exists(path):  # the image was deleted meanwhile: no rendition outlives it
        default_storage.delete(name)
    return rendition


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
