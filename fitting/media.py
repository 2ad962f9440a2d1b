"""Media served by the app itself (the embedded default): owner-only for photos and results.

Catalogue images are public. A person photo or a result image is served only to its owner
(a user who owns a row that points at it: a cached result's rows share files, each owner sees
theirs) and to staff who hold the view permission on the model the file belongs to. In
production the storage backend serves media; there, use private buckets with signed URLs.

The path is checked in the one form it is served in: a path that is not already normal (a
``..`` or ``.`` segment, an empty segment, a backslash, however it was percent-encoded on the
wire) is refused outright, so the decision and the file served can never differ.
"""

import posixpath

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import Http404
from django.views.static import serve
from rest_framework.exceptions import AuthenticationFailed

from config.auth import request_user
from fitting.models import FittingResultImage
from users.models import UserImage


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
    if path.startswith("items/"):
        return True
    if not user.is_authenticated:
        return False
    if path.startswith("photos/"):
        if user.is_staff and user.has_perm("users.view_userimage"):
            return True
        return UserImage.objects.filter(image=path, owner=user).exists()
    if path.startswith("results/"):
        # Result images are shown on the job's admin page, so either view permission admits.
        if user.is_staff and (
            user.has_perm("fitting.view_fittingresult") or user.has_perm("fitting.view_fittingresultimage")
        ):
            return True
        return FittingResultImage.objects.filter(image=path, job__owner=user).exists()
    return False


def serve_media(request, path: str):
    path = normal_path(path)
    if path is None or not _may_see(_user(request), path):
        raise Http404
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Cache-Control"] = "private, max-age=3600" if not path.startswith("items/") else "max-age=86400"
    return response
