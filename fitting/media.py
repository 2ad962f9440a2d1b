"""Media served by the app itself (the embedded default): owner-only for photos and results.

Catalogue images are public. A person photo or a result image is served only to staff and
to a user who owns a row that points at it (a cached result's rows share files, each owner sees
theirs). In production the storage backend serves media; there, use private buckets with
signed URLs for the same effect.
"""

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


def _may_see(user, path: str) -> bool:
    if path.startswith("items/"):
        return True
    if not user.is_authenticated:
        return False
    if user.is_staff:  # support staff see every job's images in the admin
        return True
    if path.startswith("photos/"):
        return UserImage.objects.filter(image=path, owner=user).exists()
    if path.startswith("results/"):
        return FittingResultImage.objects.filter(image=path, job__owner=user).exists()
    return False


def serve_media(request, path: str):
    if not _may_see(_user(request), path):
        raise Http404
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    response["Cache-Control"] = "private, max-age=3600" if not path.startswith("items/") else "max-age=86400"
    return response
