"""A job's progress, written by its worker: every write is conditional on the job still being this attempt's."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from PIL import Image

from core import images
from core.files import file_delete_quietly, file_store_new
from fitting import costs, metrics, notify
from fitting.errors import FailureCode
from fitting.models import AttemptResult, FittingResult, FittingResultImage, ImageStep, JobEvent, Status, StepAttempt
from fitting.services.reuse import step_prefix_key

# Failures that give the job's daily-quota slot back: nothing usable was made (issue 22).
QUOTA_GIVEN_BACK_CODES = (FailureCode.QUALITY_CHECK_FAILED,)


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


@dataclass
class AttemptMade:
    """One engine call of a step as the quality gate saw it (not yet stored).

    ``image`` is fitted to the canvas; ``scores`` is ``Assessment.as_json()`` (with "judge"
    when the judge ran), {} when not checked; ``passed`` None when not checked; ``score``
    ranks attempts that all failed (accept_best).
    """

    number: int
    seed: int | None
    image: Image.Image
    latency_ms: int
    usage: dict[str, int] = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    passed: bool | None = None
    score: float = 0.0

    @property
    def check_outcomes(self) -> dict[str, str]:
        return {name: check["outcome"] for name, check in (self.scores.get("checks") or {}).items()}


def _attempt_row(job: FittingResult, step: str, attempt: AttemptMade, outcome: str, **fields) -> StepAttempt:
    return StepAttempt(
        job=job,
        category=step,
        number=attempt.number,
        seed=attempt.seed,
        scores=attempt.scores,
        passed=attempt.passed,
        outcome=outcome,
        latency_ms=attempt.latency_ms,
        usage=attempt.usage,
        **fields,
    )


def fitting_attempt_rejected(*, job: FittingResult, step: str, attempt: AttemptMade) -> StepAttempt:
    """Keep an attempt the quality gate rejected: its image (under attempts/), scores and tokens.

    Its tokens count in the job's cost at once, whether or not a later attempt passes.
    """
    row = _attempt_row(job, step, attempt, AttemptResult.REJECTED)
    file_store_new(row.image, f"{step}.{images.RESULT_EXTENSION}", images.encode_result(attempt.image))
    input_tokens, output_tokens = costs.usage_tokens(attempt.usage)
    try:
        with transaction.atomic():
            _write_if_current_attempt(
                job,
                input_tokens=job.input_tokens + input_tokens,
                output_tokens=job.output_tokens + output_tokens,
                # What the API shows of a step still trying (or failed): its calls so far.
                step_metrics={**job.step_metrics, step: {"attempts": attempt.number, "quality_passed": False}},
            )
            row.save()
            metrics.count_step_attempt(job=job, outcome=AttemptResult.REJECTED, checks=attempt.check_outcomes)
            # fitting_step_started counted the step's first call; each retry is one more.
            costs.usage_add(
                user_id=job.owner_id,
                model=job.model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                engine_calls=int(attempt.number > 1),
            )
    except BaseException:
        file_delete_quietly(row.image.storage, row.image.name)
        raise
    return row


@transaction.atomic
def fitting_step_started(*, job: FittingResult, step: str) -> None:
    """The step's engine call is about to be made: recorded, and counted in the usage ledger."""
    first_call = job.current_step is None  # no step started yet in this attempt
    _write_if_current_attempt(job, current_step=step)
    costs.usage_add(user_id=job.owner_id, engine_calls=1, engine_jobs=int(first_call))
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.STEP_STARTED)


def fitting_step_finished(
    *,
    job: FittingResult,
    step: str,
    image: Image.Image,
    latency_ms: int,
    usage: dict[str, int],
    attempt: AttemptMade | None = None,
    best: StepAttempt | None = None,
    attempts: int = 1,
) -> FittingResultImage:
    """Store the step's image and its timing in one transaction; on failure, no file is left.

    The quality gate's kept attempt is either ``attempt`` (passed, or not checked: its row is
    made here on the step image's file, and ``usage`` is its tokens) or ``best``, a rejected
    attempt already stored that FITTING_QUALITY_POLICY=accept_best keeps (its tokens are
    already counted: ``usage`` is then {}). ``attempts``: the step's engine calls in all.
    """
    row = FittingResultImage(
        job=job, step=step, width=image.width, height=image.height, prefix_key=step_prefix_key(job, step)
    )
    file_store_new(row.image, f"{step}.{images.RESULT_EXTENSION}", images.encode_result(image))
    metrics_of_step = {"latency_ms": latency_ms, **usage}
    if best is not None or (attempt is not None and attempt.passed is not None):  # checked (the gate is on)
        kept_scores = attempt.scores if attempt is not None else best.scores
        quality_passed = attempt.passed if attempt is not None else False
        metrics_of_step.update(attempts=attempts, quality_passed=quality_passed, quality=kept_scores)
    step_metrics = {**job.step_metrics, step: metrics_of_step}
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
            if attempt is not None:  # on the step image's file: no copy
                outcome = {True: AttemptResult.ACCEPTED, False: AttemptResult.BEST, None: AttemptResult.UNCHECKED}
                _attempt_row(job, step, attempt, outcome[attempt.passed], image=row.image.name).save()
                metrics.count_step_attempt(job=job, outcome=outcome[attempt.passed], checks=attempt.check_outcomes)
            if best is not None:
                StepAttempt.objects.filter(id=best.id).update(outcome=AttemptResult.BEST)
            # fitting_step_started counted the step's first call; a retry that passed is one more.
            retried = int(attempt is not None and attempt.number > 1)
            costs.usage_add(
                user_id=job.owner_id,
                model=job.model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                engine_calls=retried,
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
    if code in QUOTA_GIVEN_BACK_CODES:
        costs.usage_give_back_job(job=job)
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.TIMEOUT if status == Status.TIMEOUT else JobEvent.FAILED)
