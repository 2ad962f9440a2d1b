"""One exception hierarchy with stable codes.

Services raise these and never import ``rest_framework``; ``core.exceptions`` renders
them as ``{"error": {"code", "message", "field"}}``. A failed job stores the same codes.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ErrorCode(models.TextChoices):
    """Every error code the API answers or a failed job stores: the one list of them.

    The exceptions below, the job's ``error_code`` field (its choices) and the OpenAPI
    descriptions all use these members, never loose strings. The label is the code itself:
    staff search and report by it.
    """

    # request validation (400), in the order POST /api/virtual-fitting checks them
    VALIDATION_ERROR = "VALIDATION_ERROR", "VALIDATION_ERROR"
    PHOTO_REQUIRED = "PHOTO_REQUIRED", "PHOTO_REQUIRED"
    INSUFFICIENT_ITEMS = "INSUFFICIENT_ITEMS", "INSUFFICIENT_ITEMS"
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS", "TOO_MANY_ITEMS"
    DUPLICATE_CATEGORY = "DUPLICATE_CATEGORY", "DUPLICATE_CATEGORY"
    INVALID_CATEGORY = "INVALID_CATEGORY", "INVALID_CATEGORY"
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
    # job failures (stored on the job)
    JOB_FAILED = "JOB_FAILED", "JOB_FAILED"
    PHOTO_UNREADABLE = "PHOTO_UNREADABLE", "PHOTO_UNREADABLE"
    ITEM_IMAGE_UNREADABLE = "ITEM_IMAGE_UNREADABLE", "ITEM_IMAGE_UNREADABLE"
    ENGINE_ERROR = "ENGINE_ERROR", "ENGINE_ERROR"
    ENGINE_BLOCKED = "ENGINE_BLOCKED", "ENGINE_BLOCKED"
    ENGINE_NO_IMAGE = "ENGINE_NO_IMAGE", "ENGINE_NO_IMAGE"
    ENGINE_REJECTED = "ENGINE_REJECTED", "ENGINE_REJECTED"
    ENGINE_UNAVAILABLE = "ENGINE_UNAVAILABLE", "ENGINE_UNAVAILABLE"
    ENGINE_BAD_IMAGE = "ENGINE_BAD_IMAGE", "ENGINE_BAD_IMAGE"
    ENGINE_MODEL_UNAVAILABLE = "ENGINE_MODEL_UNAVAILABLE", "ENGINE_MODEL_UNAVAILABLE"
    ENGINE_MISMATCH = "ENGINE_MISMATCH", "ENGINE_MISMATCH"
    GARMENT_NOT_PLACED = "GARMENT_NOT_PLACED", "GARMENT_NOT_PLACED"
    TIMEOUT = "TIMEOUT", "TIMEOUT"
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


# --- request validation (400), in the order POST /api/virtual-fitting checks them ---------
class ValidationFailed(ServiceError):
    code = ErrorCode.VALIDATION_ERROR
    status = 400
    default_message = _("The request body is not valid.")


class PhotoRequiredError(ValidationFailed):
    code = ErrorCode.PHOTO_REQUIRED
    default_message = _("userPhotoUrl must be the URL of one of your photos.")


class InsufficientItemsError(ValidationFailed):
    code = ErrorCode.INSUFFICIENT_ITEMS
    default_message = _("Pick at least one item.")


class TooManyItemsError(ValidationFailed):
    code = ErrorCode.TOO_MANY_ITEMS
    default_message = _("Pick at most three items.")


class DuplicateCategoryError(ValidationFailed):
    code = ErrorCode.DUPLICATE_CATEGORY
    default_message = _("Pick at most one item per category.")


class InvalidCategoryError(ValidationFailed):
    code = ErrorCode.INVALID_CATEGORY
    default_message = _("The category must be top, bottom or outer, and the item's own.")


class InvalidItemIdError(ValidationFailed):
    code = ErrorCode.INVALID_ITEM_ID
    default_message = _("This item does not exist or is not available.")


class InvalidWebhookUrlError(ValidationFailed):
    code = ErrorCode.INVALID_WEBHOOK_URL
    default_message = _("webhookUrl must be an http or https URL of a public address.")


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


class PhotoInUseError(ServiceError):
    code = ErrorCode.PHOTO_IN_USE
    status = 409
    default_message = _("This photo is used by a job that is still running.")


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
    """The database cannot be reached (down, restarting, out of connections): worth a retry."""

    code = ErrorCode.SERVICE_UNAVAILABLE
    status = 503
    default_message = _("The service is unavailable for a moment. Try again shortly.")
    retry_after = 5  # seconds


# --- authentication --------------------------------------------------------------------------
class InvalidCredentialsError(ServiceError):
    code = ErrorCode.INVALID_CREDENTIALS
    status = 400
    default_message = _("Unable to log in with the given username and password.")


# --- idempotency ----------------------------------------------------------------------------
class IdempotencyKeyReusedError(ServiceError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    status = 422
    default_message = _("This Idempotency-Key was already used with a different request.")


# --- job failures (stored on the job, never an HTTP answer) --------------------------------
class JobError(ServiceError):
    """A failure of one step of a running job."""

    code = ErrorCode.JOB_FAILED


class PhotoUnreadableError(JobError):
    code = ErrorCode.PHOTO_UNREADABLE
    default_message = _("The person photo could not be read.")


class ItemImageUnreadableError(JobError):
    code = ErrorCode.ITEM_IMAGE_UNREADABLE
    default_message = _("A garment image could not be read.")


class EngineError(JobError):
    code = ErrorCode.ENGINE_ERROR
    default_message = _("The image engine failed.")


class EngineBlockedError(EngineError):
    code = ErrorCode.ENGINE_BLOCKED
    default_message = _("The image engine refused the request for safety or policy reasons.")


class EngineNoImageError(EngineError):
    code = ErrorCode.ENGINE_NO_IMAGE
    default_message = _("The image engine answered without an image.")


class EngineRejectedError(EngineError):
    code = ErrorCode.ENGINE_REJECTED
    default_message = _("The image engine rejected the request.")


class EngineUnavailableError(EngineError):
    code = ErrorCode.ENGINE_UNAVAILABLE
    default_message = _("The image engine is unavailable.")


class EngineBadImageError(EngineError):
    code = ErrorCode.ENGINE_BAD_IMAGE
    default_message = _("The image engine returned an image that could not be decoded.")


class EngineModelUnavailableError(EngineError):
    """The provider no longer serves the configured model (404 NOT_FOUND: shut down or renamed).

    Not retried: only a changed setting helps. Users are told the service is being updated;
    the job's stored message names the model and the setting for staff.
    """

    code = ErrorCode.ENGINE_MODEL_UNAVAILABLE
    default_message = _("The service is being updated. Please try again later.")


class EngineMismatchError(JobError):
    """The worker runs another engine, model or prompt version than the one the job is pinned to."""

    code = ErrorCode.ENGINE_MISMATCH
    default_message = _("The job was made for another image engine than the one running now.")


class GarmentNotPlacedError(JobError):
    """The engine could not put the garment on the person (the local engine found no body)."""

    code = ErrorCode.GARMENT_NOT_PLACED
    default_message = _("The garment could not be placed on the person in the photo.")


class DeadlineExceeded(JobError):
    code = ErrorCode.TIMEOUT
    default_message = _("The job ran out of time.")


class NotReprocessableError(ServiceError):
    code = ErrorCode.NOT_REPROCESSABLE
    status = 409
    default_message = _("Only failed or timed-out jobs can be reprocessed.")


class JobFinishedError(ServiceError):
    code = ErrorCode.JOB_FINISHED
    status = 409
    default_message = _("The job has already finished.")


class JobPhotoDeletedError(NotReprocessableError):
    default_message = _("The job's photo was deleted, so the job cannot be run again.")


class JobEngineMismatchError(NotReprocessableError):
    """Reprocessing without naming an engine, where the job is pinned to another one."""

    default_message = _(
        "The job was made by another image engine than the one configured here: name the engine to switch to."
    )


def _subclasses(cls: type[ServiceError]):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def job_error_message(code: str) -> str:
    """The user-facing, translated message of a job failure code.

    The job row keeps the detailed message (the engine's own words, or an exception's text)
    for staff; clients get this one, in their language, and never internal details: an
    unknown code (a crash, ``INTERNAL_ERROR``) gets the generic message.
    """
    for cls in _subclasses(JobError):
        if cls.code == code:
            return str(cls.default_message)
    return str(ServiceError.default_message)
