"""A job's progress, written by its worker: every write is conditional on the job still being this attempt's."""

from __future__ import annotations

from collections.abc import Sequence
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
from users.selectors import user_daily_job_quota

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
    sample: int = 0  # which of the call's numSamples candidates

    @property
    def rank_key(self) -> tuple[bool, float]:
        """Best first when sorted in reverse: passed before failed, then the higher score."""
        return (bool(self.passed), self.score)

    @property
    def check_outcomes(self) -> dict[str, str]:
        return {name: check["outcome"] for name, check in (self.scores.get("checks") or {}).items()}


def _attempt_row(job: FittingResult, step: str, attempt: AttemptMade, outcome: str, **fields) -> StepAttempt:
    return StepAttempt(
        job=job,
        category=step,
        number=attempt.number,
        sample=attempt.sample,
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

    Its tokens count in the job's cost at once, whether or not a later attempt passes. (Its
    engine call was counted before it was made: ``fitting_step_started``, ``fitting_step_retried``.)
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
            metrics.count_tokens(model=job.model, input_tokens=input_tokens, output_tokens=output_tokens)
            costs.usage_add(
                user_id=job.owner_id, model=job.model, input_tokens=input_tokens, output_tokens=output_tokens
            )
    except BaseException:
        file_delete_quietly(row.image.storage, row.image.name)
        raise
    return row


@transaction.atomic
def fitting_step_started(*, job: FittingResult, step: str, calls: int = 1) -> None:
    """The step's first engine ``calls`` (one per candidate with Gemini) are about to be made:
    recorded, and counted in the usage ledger."""
    first_call = job.current_step is None  # no step started yet in this attempt
    _write_if_current_attempt(job, current_step=step)
    costs.usage_add(user_id=job.owner_id, engine_calls=calls, engine_jobs=int(first_call))
    metrics.count_engine_calls(job=job, calls=calls)
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.STEP_STARTED)


@transaction.atomic
def fitting_step_retried(*, job: FittingResult, calls: int) -> None:
    """The quality gate asks the step again: its ``calls`` are counted before they are made."""
    costs.usage_add(user_id=job.owner_id, engine_calls=calls)
    metrics.count_engine_calls(job=job, calls=calls)


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
    others: Sequence[AttemptMade] = (),
    other_rows: Sequence[StepAttempt] = (),
    candidates: bool = False,
) -> FittingResultImage:
    """Store the step's image and its timing in one transaction; on failure, no file is left.

    The quality gate's kept attempt is either ``attempt`` (passed, or not checked: its row is
    made here on the step image's file, and ``usage`` is its tokens) or ``best``, a rejected
    attempt already stored that FITTING_QUALITY_POLICY=accept_best keeps (its tokens are
    already counted: ``usage`` is then {}). ``attempts``: the step's rounds of engine calls.

    numSamples > 1 (issue 23): ``others`` are the kept call's other candidates, not yet stored
    (each gets its file under attempts/, outcome OUTRANKED, its tokens counted), best first;
    ``other_rows`` the same already stored as rejected (accept_best). With ``candidates`` (the
    last step) they are the job's candidates: the kept one rank 0, the others 1, 2, … in order.
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
    judge_input, judge_output = costs.usage_tokens(usage, prefix=costs.JUDGE_PREFIX)
    outranked = []
    for rank, other in enumerate(others, start=1):
        other_row = _attempt_row(job, step, other, AttemptResult.OUTRANKED, candidate_rank=rank if candidates else None)
        outranked.append(other_row)
    try:
        for other, other_row in zip(others, outranked, strict=True):
            file_store_new(other_row.image, f"{step}.{images.RESULT_EXTENSION}", images.encode_result(other.image))
        for other in others:  # every candidate's tokens count in the job's cost
            other_input, other_output = costs.usage_tokens(other.usage)
            input_tokens, output_tokens = input_tokens + other_input, output_tokens + other_output
        with transaction.atomic():
            _write_if_current_attempt(
                job,
                step_metrics=step_metrics,
                input_tokens=job.input_tokens + input_tokens,
                output_tokens=job.output_tokens + output_tokens,
                judge_input_tokens=job.judge_input_tokens + judge_input,
                judge_output_tokens=job.judge_output_tokens + judge_output,
            )
            row.save()
            if attempt is not None:  # on the step image's file: no copy
                outcome = {True: AttemptResult.ACCEPTED, False: AttemptResult.BEST, None: AttemptResult.UNCHECKED}
                kept_rank = 0 if candidates else None
                kept_row = _attempt_row(
                    job, step, attempt, outcome[attempt.passed], image=row.image.name, candidate_rank=kept_rank
                )
                kept_row.save()
                metrics.count_step_attempt(job=job, outcome=outcome[attempt.passed], checks=attempt.check_outcomes)
            if best is not None:
                StepAttempt.objects.filter(id=best.id).update(
                    outcome=AttemptResult.BEST, candidate_rank=0 if candidates else None
                )
            for other, other_row in zip(others, outranked, strict=True):
                other_row.save()
                metrics.count_step_attempt(job=job, outcome=AttemptResult.OUTRANKED, checks=other.check_outcomes)
            if candidates:
                for rank, rejected_row in enumerate(other_rows, start=1):
                    StepAttempt.objects.filter(id=rejected_row.id).update(candidate_rank=rank)
            # The calls were counted before they were made (fitting_step_started, fitting_step_retried).
            costs.usage_add(
                user_id=job.owner_id, model=job.model, input_tokens=input_tokens, output_tokens=output_tokens
            )
            costs.usage_add(
                user_id=job.owner_id, model=costs.judge_model(), input_tokens=judge_input, output_tokens=judge_output
            )
            metrics.count_step_finished(
                job=job,
                step=step,
                latency_ms=latency_ms,
                tokens=[(job.model, input_tokens, output_tokens), (costs.judge_model(), judge_input, judge_output)],
            )
            notify.job_changed_on_commit(job_id=job.id, event=JobEvent.STEP_FINISHED)
    except BaseException:
        file_delete_quietly(row.image.storage, row.image.name)
        for other_row in outranked:
            if other_row.image:
                file_delete_quietly(other_row.image.storage, other_row.image.name)
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
        costs.usage_give_back_job(job=job, cap=user_daily_job_quota(user=job.owner))
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.TIMEOUT if status == Status.TIMEOUT else JobEvent.FAILED)
