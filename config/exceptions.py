"""The one DRF exception handler: every error is {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import ServiceError

logger = logging.getLogger(__name__)

DRF_CODES = {
    exceptions.ValidationError: "VALIDATION_ERROR",
    exceptions.ParseError: "VALIDATION_ERROR",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    exceptions.AuthenticationFailed: "NOT_AUTHENTICATED",
    exceptions.PermissionDenied: "PERMISSION_DENIED",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.Throttled: "THROTTLED",
}


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
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.field), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("REQUEST_TOO_LARGE", _("The request body is too large.")),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled error in %s", context.get("view"))
        return Response(
            error_body("INTERNAL_ERROR", _("Something went wrong.")),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), "ERROR")
    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_error(exc.detail)
    else:
        field, message = None, str(exc.detail)
    response.data = error_body(code, message, field)
    return response


@csrf_exempt  # it changes nothing; else an unsafe method on a bad /api/ path got an HTML 403
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    return JsonResponse(error_body("NOT_FOUND", _("Not found.")), status=404)
