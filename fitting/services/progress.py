"""A job's progress, written by its worker: every write is conditional on the job still being this attempt's."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from PIL import Image

from core import images
from core.files import file_delete_quietly, file_store_new
from fitting import costs, metrics, notify
from fitting.errors import FailureCode
from fitting.models import FittingResult, FittingResultImage, ImageStep, JobEvent, Status
from fitting.services.reuse import step_prefix_key


class JobSuperseded(Exception):
    """The job is no longer this attempt's to write (ended by the sweep, or reprocessed)."""


def _write_if_current_attempt(job: FittingResult, **fields) -> None:
    fields["updated_at"] = timezone.now()
    updated = FittingResult.objects.filter(id=job.id, attempt=job.attempt, status=Status.PROCESSING).update(**fields)
    if not updated:
        raise JobSuperseded(str(job.id))
    for name, value in fields.items():
        setattr(job, name, value)


def fitting_claim(*, job_id: str, attempt: int) -> bool:
    """Take the job for this delivery; False when another delivery already has it."""
    now = timezone.now()
    return bool(
        FittingResult.objects.filter(
            id=job_id, attempt=attempt, status=Status.PROCESSING, started_at__isnull=True
        ).update(started_at=now, updated_at=now)
    )


@transaction.atomic
def fitting_step_started(*, job: FittingResult, step: str) -> None:
    """The step's engine call is about to be made: recorded, and counted in the usage ledger."""
    first_call = job.current_step is None  # no step started yet in this attempt
    _write_if_current_attempt(job, current_step=step)
    costs.usage_add(user_id=job.owner_id, engine_calls=1, engine_jobs=int(first_call))
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.STEP_STARTED)


def fitting_step_finished(
    *, job: FittingResult, step: str, image: Image.Image, latency_ms: int, usage: dict[str, int]
) -> FittingResultImage:
    """Store the step's image and its timing in one transaction; on failure, no file is left."""
    row = FittingResultImage(
        job=job, step=step, width=image.width, height=image.height, prefix_key=step_prefix_key(job, step)
    )
    file_store_new(row.image, f"{step}.{images.RESULT_EXTENSION}", images.encode_result(image))
    step_metrics = {**job.step_metrics, step: {"latency_ms": latency_ms, **usage}}
    input_tokens, output_tokens = costs.usage_tokens(usage)
    try:
        with transaction.atomic():
            _write_if_current_attempt(
                job,
                step_metrics=step_metrics,
                input_tokens=job.input_tokens + input_tokens,
                output_tokens=job.output_tokens + output_tokens,
            )
            row.save()
            costs.usage_add(
                user_id=job.owner_id, model=job.model, input_tokens=input_tokens, output_tokens=output_tokens
            )
            metrics.count_step_finished(
                job=job, step=step, latency_ms=latency_ms, input_tokens=input_tokens, output_tokens=output_tokens
            )
            notify.job_changed_on_commit(job_id=job.id, event=JobEvent.STEP_FINISHED)
    except BaseException:
        file_delete_quietly(row.image.storage, row.image.name)
        raise
    return row


@transaction.atomic
def fitting_complete(
    *, job: FittingResult, last_step_image: FittingResultImage, message: str | None, message_ms: int | None
) -> None:
    # The final image is the last step's output: a second row on the same file, no copy.
    FittingResultImage.objects.create(
        job=job,
        step=ImageStep.FINAL,
        image=last_step_image.image.name,
        width=last_step_image.width,
        height=last_step_image.height,
    )
    step_metrics = dict(job.step_metrics)
    if message_ms is not None:
        step_metrics["message"] = {"latency_ms": message_ms}
        if job.current_step is None:  # every step was reused: the message was this attempt's one engine call
            costs.usage_add(user_id=job.owner_id, engine_jobs=1)
    _write_if_current_attempt(
        job,
        status=Status.COMPLETED,
        current_step=None,
        llm_message=message,
        step_metrics=step_metrics,
        finished_at=timezone.now(),
    )
    metrics.count_job_ended(job=job, status=Status.COMPLETED)
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.COMPLETED)


@transaction.atomic
def fitting_fail(*, job: FittingResult, step: str | None, code: str, message: str) -> None:
    status = Status.TIMEOUT if code == FailureCode.TIMEOUT else Status.FAILED
    _write_if_current_attempt(
        job,
        status=status,
        current_step=None,
        failed_step=step,
        error_code=code,
        error_message=message[:2000],
        finished_at=timezone.now(),
    )
    metrics.count_job_ended(job=job, status=status, code=code)
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.TIMEOUT if status == Status.TIMEOUT else JobEvent.FAILED)
