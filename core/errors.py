"""One exception hierarchy with stable codes: the base class, the API's codes, the generic errors.

Services raise these (and the apps' own, e.g. ``fitting.errors``) and never import
``rest_framework``; ``core.exceptions`` renders them as ``{"error": {"code", "message",
"field"}}``. What a failed job stores is the fitting app's own set (``fitting.errors.FailureCode``).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ErrorCode(models.TextChoices):
    """Every error code the API answers: the one list of them.

    The exceptions (here and in the apps) and the OpenAPI descriptions use these members,
    never loose strings. A job's stored failure codes are not here (``fitting.errors.FailureCode``):
    adding an API code needs no migration. The label is the code itself.
    """

    # request validation (400), in the order POST /api/virtual-fitting checks them
    VALIDATION_ERROR = "VALIDATION_ERROR", "VALIDATION_ERROR"
    PHOTO_REQUIRED = "PHOTO_REQUIRED", "PHOTO_REQUIRED"
    INSUFFICIENT_ITEMS = "INSUFFICIENT_ITEMS", "INSUFFICIENT_ITEMS"
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS", "TOO_MANY_ITEMS"
    DUPLICATE_CATEGORY = "DUPLICATE_CATEGORY", "DUPLICATE_CATEGORY"
    INVALID_CATEGORY = "INVALID_CATEGORY", "INVALID_CATEGORY"
    CATEGORY_CONFLICT = "CATEGORY_CONFLICT", "CATEGORY_CONFLICT"
    INVALID_ITEM_ID = "INVALID_ITEM_ID", "INVALID_ITEM_ID"
    INVALID_WEBHOOK_URL = "INVALID_WEBHOOK_URL", "INVALID_WEBHOOK_URL"
    # uploads
    IMAGE_INVALID = "IMAGE_INVALID", "IMAGE_INVALID"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE", "IMAGE_TOO_LARGE"
    IMAGE_TOO_MANY_PIXELS = "IMAGE_TOO_MANY_PIXELS", "IMAGE_TOO_MANY_PIXELS"
    IMAGE_ASPECT_RATIO = "IMAGE_ASPECT_RATIO", "IMAGE_ASPECT_RATIO"
    # authentication, access and the HTTP layer
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS", "INVALID_CREDENTIALS"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED", "NOT_AUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED", "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND", "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED", "METHOD_NOT_ALLOWED"
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE", "NOT_ACCEPTABLE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE", "UNSUPPORTED_MEDIA_TYPE"
    # limits and conflicts
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE", "REQUEST_TOO_LARGE"
    THROTTLED = "THROTTLED", "THROTTLED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED", "QUOTA_EXCEEDED"
    STORAGE_FULL = "STORAGE_FULL", "STORAGE_FULL"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE", "SERVICE_UNAVAILABLE"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_REUSED"
    PHOTO_IN_USE = "PHOTO_IN_USE", "PHOTO_IN_USE"
    NOT_REPROCESSABLE = "NOT_REPROCESSABLE", "NOT_REPROCESSABLE"
    JOB_FINISHED = "JOB_FINISHED", "JOB_FINISHED"
    JOB_NOT_COMPLETED = "JOB_NOT_COMPLETED", "JOB_NOT_COMPLETED"
    # anything unexpected
    INTERNAL_ERROR = "INTERNAL_ERROR", "INTERNAL_ERROR"


class ServiceError(Exception):
    code = ErrorCode.INTERNAL_ERROR
    status = 500
    default_message = _("Something went wrong.")

    def __init__(self, message: str | None = None, *, field: str | None = None, headers: dict | None = None):
        self.message = str(message) if message is not None else str(self.default_message)
        self.field = field
        self.headers = headers or {}  # HTTP headers of the answer, e.g. Retry-After
        super().__init__(self.message)


# --- request validation (400) --------------------------------------------------------------
class ValidationFailed(ServiceError):
    code = ErrorCode.VALIDATION_ERROR
    status = 400
    default_message = _("The request body is not valid.")


# --- uploads (400) ------------------------------------------------------------------------
class ImageInvalidError(ValidationFailed):
    code = ErrorCode.IMAGE_INVALID
    default_message = _("The file is not a JPEG, PNG, WebP or HEIC image.")


class ImageTooLargeError(ValidationFailed):
    code = ErrorCode.IMAGE_TOO_LARGE
    default_message = _("The file is too large.")


class ImageTooManyPixelsError(ValidationFailed):
    code = ErrorCode.IMAGE_TOO_MANY_PIXELS
    default_message = _("The image has too many pixels.")


class ImageAspectRatioError(ValidationFailed):
    code = ErrorCode.IMAGE_ASPECT_RATIO
    default_message = _("The image is too long and narrow: its long side may be at most ten times its short side.")


# --- limits (bodies, rates, quotas, storage) -----------------------------------------------
class RequestTooLargeError(ServiceError):
    code = ErrorCode.REQUEST_TOO_LARGE
    status = 413
    default_message = _("The request body is too large.")


class QuotaExceededError(ServiceError):
    code = ErrorCode.QUOTA_EXCEEDED
    status = 429
    default_message = _("You have reached your limit.")


class StorageFullError(ServiceError):
    code = ErrorCode.STORAGE_FULL
    status = 507
    default_message = _("The server has no room to store this right now. Try again later.")


class ServiceUnavailableError(ServiceError):
    """The database or Redis cannot be reached (down, restarting, out of connections): worth a retry."""

    code = ErrorCode.SERVICE_UNAVAILABLE
    status = 503
    default_message = _("The service is unavailable for a moment. Try again shortly.")
    retry_after = 5  # seconds


# --- authentication --------------------------------------------------------------------------
class InvalidCredentialsError(ServiceError):
    code = ErrorCode.INVALID_CREDENTIALS
    status = 400
    default_message = _("Unable to log in with the given username and password.")
