"""Every error is {"error": {"code", "message", "field"}}.

The DRF exception handler renders the API views' errors; Django's error handlers (set in
``config.urls``) render the rest on API paths (``/api/…``, ``/healthz``, media): errors in
middleware, in the event stream (a plain async view) and in media serving. HTML pages (the
admin, the demo page, login) keep Django's own error pages.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin
from django.utils.translation import gettext as _
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ErrorCode, ServiceError, ServiceUnavailableError

logger = logging.getLogger(__name__)

DRF_CODES = {
    exceptions.ValidationError: ErrorCode.VALIDATION_ERROR,
    exceptions.ParseError: ErrorCode.VALIDATION_ERROR,
    exceptions.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    exceptions.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    exceptions.AuthenticationFailed: ErrorCode.NOT_AUTHENTICATED,
    exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    exceptions.NotFound: ErrorCode.NOT_FOUND,
    exceptions.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    exceptions.Throttled: ErrorCode.THROTTLED,
}


# A service the request needs is down or out of reach: the database, or Redis (the cache that
# holds the request rates, the broker). Worth a retry: 503 SERVICE_UNAVAILABLE with Retry-After.
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)


def _unavailable_service(exc: BaseException) -> str:
    return "redis" if isinstance(exc, RedisConnectionError | RedisTimeoutError) else "database"


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


def _first_error(detail, path: str = "") -> tuple[str | None, str]:
    """The first (field path, message) of a DRF ValidationError's nested detail, e.g. items[1].itemId."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # a list of children reports {index: errors}
                return _first_error(value, f"{path}[{key}]")
            name = "" if key == "non_field_errors" else str(key)
            return _first_error(value, f"{path}.{name}" if path and name else (path or name))
    if isinstance(detail, list) and detail:  # the field's messages
        return _first_error(detail[0], path)
    return (path or None), str(detail)


def exception_handler(exc, context):
    if isinstance(exc, UNAVAILABLE_ERRORS):
        logger.error("%s unavailable in %s: %s", _unavailable_service(exc), context.get("view"), exc)
        exc = ServiceUnavailableError(headers={"Retry-After": str(ServiceUnavailableError.retry_after)})
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.field), status=exc.status, headers=exc.headers)
    if isinstance(exc, SuspiciousOperation):  # e.g. over 1000 form fields or query parameters
        code, message, status_code = _suspicious(exc)
        return Response(error_body(code, message), status=status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view"))
        return Response(
            error_body(ErrorCode.INTERNAL_ERROR, _("Something went wrong.")),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    fallback = ErrorCode.INTERNAL_ERROR if response.status_code >= 500 else ErrorCode.VALIDATION_ERROR
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), fallback)
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_error(exc.detail)
    else:
        field, message = None, str(exc.detail)
    response.data = error_body(code, message, field)
    return response


def _suspicious(exc: SuspiciousOperation) -> tuple[str, str, int]:
    """(code, message, status) of a request Django found suspicious: a client error, never a 500."""
    if isinstance(exc, RequestDataTooBig):
        return (
            ErrorCode.REQUEST_TOO_LARGE,
            _("The request body is too large."),
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        return (
            ErrorCode.VALIDATION_ERROR,
            _("The request has too many fields or parameters."),
            status.HTTP_400_BAD_REQUEST,
        )
    return ErrorCode.VALIDATION_ERROR, _("The request is not valid."), status.HTTP_400_BAD_REQUEST


@csrf_exempt  # it changes nothing; else an unsafe method on a bad /api/ path got an HTML 403
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    return JsonResponse(error_body(ErrorCode.NOT_FOUND, _("Not found.")), status=404)


# --- Django's error handlers (config.urls: handler400/403/404/500) ------------------------
def _is_api(request: HttpRequest) -> bool:
    path = request.path_info
    return path.startswith(("/api/", settings.MEDIA_URL)) or path in ("/healthz", "/metrics")


def _is_thumbnail(request: HttpRequest) -> bool:
    # core.media.serve_thumbnail (config.urls: "thumbs/"): it reads the database (who may see
    # the image) and, for an anonymous client, the cache (THUMBNAIL_ANON_RATE), like /media/.
    return request.path_info.startswith("/thumbs/")


def _json_error(code: str, message: str, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status_code, json_dumps_params={"ensure_ascii": False})


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, SuspiciousOperation):
        return _json_error(*_suspicious(exception))
    return _json_error(ErrorCode.VALIDATION_ERROR, _("The request is not valid."), 400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return _json_error(ErrorCode.PERMISSION_DENIED, str(exceptions.PermissionDenied.default_detail), 403)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return _json_error(ErrorCode.NOT_FOUND, _("Not found."), 404)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django has logged the exception with its traceback; the client gets a generic message.
    if not _is_api(request):
        return defaults.server_error(request)
    return _json_error(ErrorCode.INTERNAL_ERROR, _("Something went wrong."), 500)


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A view on an API path that fails because the database or Redis cannot be reached: 503, not 500.

    DRF's views get the same answer from ``exception_handler``; this covers the others on API
    paths (media, the event stream, /metrics) and thumbnails (/thumbs/). The outage is logged
    without a traceback each time.
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not (isinstance(exception, UNAVAILABLE_ERRORS) and (_is_api(request) or _is_thumbnail(request))):
            return None
        logger.error("%s unavailable on %s: %s", _unavailable_service(exception), request.path_info, exception)
        error = ServiceUnavailableError()
        response = _json_error(error.code, error.message, error.status)
        response["Retry-After"] = str(ServiceUnavailableError.retry_after)
        return response


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a plain view's session write without the token (DRF's views say it themselves)."""
    if not _is_api(request):
        return csrf.csrf_failure(request, reason)
    return _json_error(ErrorCode.PERMISSION_DENIED, _("CSRF verification failed. Request aborted."), 403)
