"""The fitting app's errors: the job's failure codes, and the exceptions only fitting raises.

``FailureCode`` is what a failed job stores (``FittingResult.error_code``): its own set,
apart from the API's HTTP error codes (``core.errors.ErrorCode``), so a new API code needs
no migration. The exceptions raised to an API client carry an ``ErrorCode``; those that fail
a job's step (``JobError``) carry a ``FailureCode``.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from core.errors import ErrorCode, ServiceError, ValidationFailed


class FailureCode(models.TextChoices):
    """Why a job failed, as stored on it and shown as its ``error.code``. The label is the code."""

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
    QUALITY_CHECK_FAILED = "QUALITY_CHECK_FAILED", "QUALITY_CHECK_FAILED"
    TIMEOUT = "TIMEOUT", "TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR", "INTERNAL_ERROR"  # a crash: anything unexpected


# --- request validation (400), in the order POST /api/virtual-fitting checks them ---------
class PhotoRequiredError(ValidationFailed):
    code = ErrorCode.PHOTO_REQUIRED
    default_message = _("userPhotoUrl must be the URL of one of your photos.")


class InsufficientItemsError(ValidationFailed):
    code = ErrorCode.INSUFFICIENT_ITEMS
    default_message = _("Pick at least one item.")


class TooManyItemsError(ValidationFailed):
    code = ErrorCode.TOO_MANY_ITEMS
    default_message = _("Pick at most three items.")  # the default FITTING_MAX_ITEMS; the service says its own


class DuplicateCategoryError(ValidationFailed):
    code = ErrorCode.DUPLICATE_CATEGORY
    default_message = _("Pick at most one item per category.")


class InvalidCategoryError(ValidationFailed):
    code = ErrorCode.INVALID_CATEGORY
    default_message = _("The category must be top, bottom, outer, dress or shoes, and the item's own.")


class CategoryConflictError(ValidationFailed):
    """A dress (one-piece) with a top or a bottom: the dress already is both."""

    code = ErrorCode.CATEGORY_CONFLICT
    default_message = _("A dress replaces the top and the bottom: pick a dress, or a top and a bottom.")


class InvalidItemIdError(ValidationFailed):
    code = ErrorCode.INVALID_ITEM_ID
    default_message = _("This item does not exist or is not available.")


class InvalidWebhookUrlError(ValidationFailed):
    code = ErrorCode.INVALID_WEBHOOK_URL
    default_message = _("webhookUrl must be an http or https URL of a public address.")


# --- conflicts of a request with the state of a job or a photo ----------------------------
class PhotoInUseError(ServiceError):
    code = ErrorCode.PHOTO_IN_USE
    status = 409
    default_message = _("This photo is used by a job that is still running.")


class IdempotencyKeyReusedError(ServiceError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    status = 422
    default_message = _("This Idempotency-Key was already used with a different request.")


class NotReprocessableError(ServiceError):
    code = ErrorCode.NOT_REPROCESSABLE
    status = 409
    default_message = _("Only failed or timed-out jobs can be reprocessed.")


class JobFinishedError(ServiceError):
    code = ErrorCode.JOB_FINISHED
    status = 409
    default_message = _("The job has already finished.")


class JobNotCompletedError(ServiceError):
    code = ErrorCode.JOB_NOT_COMPLETED
    status = 409
    default_message = _("Only a completed job can be rated.")


class JobPhotoDeletedError(NotReprocessableError):
    default_message = _("The job's photo was deleted, so the job cannot be run again.")


class JobEngineMismatchError(NotReprocessableError):
    """Reprocessing without naming an engine, where the job is pinned to another one."""

    default_message = _(
        "The job was made by another image engine than the one configured here: name the engine to switch to."
    )


# --- job failures (stored on the job, never an HTTP answer) --------------------------------
class JobError(ServiceError):
    """A failure of one step of a running job."""

    code = FailureCode.JOB_FAILED


class PhotoUnreadableError(JobError):
    code = FailureCode.PHOTO_UNREADABLE
    default_message = _("The person photo could not be read.")


class ItemImageUnreadableError(JobError):
    code = FailureCode.ITEM_IMAGE_UNREADABLE
    default_message = _("A garment image could not be read.")


class EngineError(JobError):
    code = FailureCode.ENGINE_ERROR
    default_message = _("The image engine failed.")


class EngineBlockedError(EngineError):
    code = FailureCode.ENGINE_BLOCKED
    default_message = _("The image engine refused the request for safety or policy reasons.")


class EngineNoImageError(EngineError):
    code = FailureCode.ENGINE_NO_IMAGE
    default_message = _("The image engine answered without an image.")


class EngineRejectedError(EngineError):
    code = FailureCode.ENGINE_REJECTED
    default_message = _("The image engine rejected the request.")


class EngineUnavailableError(EngineError):
    code = FailureCode.ENGINE_UNAVAILABLE
    default_message = _("The image engine is unavailable.")


class EngineBadImageError(EngineError):
    code = FailureCode.ENGINE_BAD_IMAGE
    default_message = _("The image engine returned an image that could not be decoded.")


class EngineModelUnavailableError(EngineError):
    """The provider no longer serves the configured model (404 NOT_FOUND: shut down or renamed).

    Not retried: only a changed setting helps. Users are told the service is being updated;
    the job's stored message names the model and the setting for staff.
    """

    code = FailureCode.ENGINE_MODEL_UNAVAILABLE
    default_message = _("The service is being updated. Please try again later.")


class EngineMismatchError(JobError):
    """The worker runs another engine, model or prompt version than the one the job is pinned to."""

    code = FailureCode.ENGINE_MISMATCH
    default_message = _("The job was made for another image engine than the one running now.")


class GarmentNotPlacedError(JobError):
    """The engine could not put the garment on the person (the local engine found no body)."""

    code = FailureCode.GARMENT_NOT_PLACED
    default_message = _("The garment could not be placed on the person in the photo.")


class QualityCheckFailedError(JobError):
    """No attempt of a step passed the quality checks (FITTING_QUALITY_POLICY=fail).

    Nothing usable was made, so the job gives its daily-quota slot back.
    """

    code = FailureCode.QUALITY_CHECK_FAILED
    default_message = _("The result did not meet the quality bar.")


class DeadlineExceeded(JobError):
    code = FailureCode.TIMEOUT
    default_message = _("The job ran out of time.")


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
