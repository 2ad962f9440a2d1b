"""One exception hierarchy with stable codes.

Services raise these and never import ``rest_framework``; ``core.exceptions`` renders
them as ``{"error": {"code", "message", "field"}}``. A failed job stores the same codes.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _


class ServiceError(Exception):
    code = "INTERNAL_ERROR"
    status = 500
    default_message = _("Something went wrong.")

    def __init__(self, message: str | None = None, *, field: str | None = None):
        self.message = str(message) if message is not None else str(self.default_message)
        self.field = field
        super().__init__(self.message)


# --- request validation (400), in the order POST /api/virtual-fitting checks them ---------
class ValidationFailed(ServiceError):
    code = "VALIDATION_ERROR"
    status = 400
    default_message = _("The request body is not valid.")


class PhotoRequiredError(ValidationFailed):
    code = "PHOTO_REQUIRED"
    default_message = _("userPhotoUrl must be the URL of one of your photos.")


class InsufficientItemsError(ValidationFailed):
    code = "INSUFFICIENT_ITEMS"
    default_message = _("Pick at least one item.")


class TooManyItemsError(ValidationFailed):
    code = "TOO_MANY_ITEMS"
    default_message = _("Pick at most three items.")


class DuplicateCategoryError(ValidationFailed):
    code = "DUPLICATE_CATEGORY"
    default_message = _("Pick at most one item per category.")


class InvalidCategoryError(ValidationFailed):
    code = "INVALID_CATEGORY"
    default_message = _("The category must be top, bottom or outer, and the item's own.")


class InvalidItemIdError(ValidationFailed):
    code = "INVALID_ITEM_ID"
    default_message = _("This item does not exist or is not available.")


# --- uploads (400) ------------------------------------------------------------------------
class ImageInvalidError(ValidationFailed):
    code = "IMAGE_INVALID"
    default_message = _("The file is not a JPEG, PNG, WebP or HEIC image.")


class ImageTooLargeError(ValidationFailed):
    code = "IMAGE_TOO_LARGE"
    default_message = _("The file is too large.")


class ImageTooManyPixelsError(ValidationFailed):
    code = "IMAGE_TOO_MANY_PIXELS"
    default_message = _("The image has too many pixels.")


class ImageAspectRatioError(ValidationFailed):
    code = "IMAGE_ASPECT_RATIO"
    default_message = _("The image is too long and narrow: its long side may be at most ten times its short side.")


class PhotoInUseError(ServiceError):
    code = "PHOTO_IN_USE"
    status = 409
    default_message = _("This photo is used by a job that is still running.")


# --- limits (bodies, rates, quotas, storage) -----------------------------------------------
class RequestTooLargeError(ServiceError):
    code = "REQUEST_TOO_LARGE"
    status = 413
    default_message = _("The request body is too large.")


class QuotaExceededError(ServiceError):
    code = "QUOTA_EXCEEDED"
    status = 429
    default_message = _("You have reached your limit.")


class StorageFullError(ServiceError):
    code = "STORAGE_FULL"
    status = 507
    default_message = _("The server has no room to store this right now. Try again later.")


# --- idempotency ----------------------------------------------------------------------------
class IdempotencyKeyReusedError(ServiceError):
    code = "IDEMPOTENCY_KEY_REUSED"
    status = 422
    default_message = _("This Idempotency-Key was already used with a different request.")


# --- job failures (stored on the job, never an HTTP answer) --------------------------------
class JobError(ServiceError):
    """A failure of one step of a running job."""

    code = "JOB_FAILED"


class PhotoUnreadableError(JobError):
    code = "PHOTO_UNREADABLE"
    default_message = _("The person photo could not be read.")


class ItemImageUnreadableError(JobError):
    code = "ITEM_IMAGE_UNREADABLE"
    default_message = _("A garment image could not be read.")


class EngineError(JobError):
    code = "ENGINE_ERROR"
    default_message = _("The image engine failed.")


class EngineBlockedError(EngineError):
    code = "ENGINE_BLOCKED"
    default_message = _("The image engine refused the request for safety or policy reasons.")


class EngineNoImageError(EngineError):
    code = "ENGINE_NO_IMAGE"
    default_message = _("The image engine answered without an image.")


class EngineRejectedError(EngineError):
    code = "ENGINE_REJECTED"
    default_message = _("The image engine rejected the request.")


class EngineUnavailableError(EngineError):
    code = "ENGINE_UNAVAILABLE"
    default_message = _("The image engine is unavailable.")


class EngineBadImageError(EngineError):
    code = "ENGINE_BAD_IMAGE"
    default_message = _("The image engine returned an image that could not be decoded.")


class DeadlineExceeded(JobError):
    code = "TIMEOUT"
    default_message = _("The job ran out of time.")


class NotReprocessableError(ServiceError):
    code = "NOT_REPROCESSABLE"
    status = 409
    default_message = _("Only failed or timed-out jobs can be reprocessed.")


class JobPhotoDeletedError(NotReprocessableError):
    default_message = _("The job's photo was deleted, so the job cannot be run again.")


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
