"""Authentication for the plain Django views (the event stream, media): as the REST API does it."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.settings import api_settings


def request_user(request: HttpRequest) -> AbstractBaseUser | AnonymousUser:
    """The user by DRF's own authenticators (token, then session).

    Raises ``rest_framework.exceptions.AuthenticationFailed`` for a token that does not check
    out (unknown, or its user inactive), as the API does, never falling back to the session.
    """
    authenticators = [cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES]
    return Request(request, authenticators=authenticators).user
