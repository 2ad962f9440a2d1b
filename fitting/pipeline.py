"""The sequential fitting job, top → dress → bottom → outer → shoes, each step's output the next one's input.

Every input is decoded once per job and intermediates stay in memory between steps; each
step's image is stored and committed as soon as it exists, so progress survives a crash
and a reprocess resumes after the last finished step.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from PIL import Image

from core import images
from core.logcontext import log_context
from fitting import costs
from fitting.engines import get_engine
from fitting.engines.base import MIN_ATTEMPT_SECONDS, AppliedGarment, Engine, Outfit, StepAbandoned
from fitting.engines.sampling import apply_garment_samples, calls_for, sample_count
from fitting.errors import (
    DeadlineExceeded,
    EngineMismatchError,
    FailureCode,
    ItemImageUnreadableError,
    JobError,
    PhotoUnreadableError,
    QualityCheckFailedError,
)
from fitting.models import FittingResult, FittingResultImage, StepAttempt
from fitting.selectors import fitting_is_current
from fitting.services.progress import (
    AttemptMade,
    JobSuperseded,
    fitting_attempt_rejected,
    fitting_claim,
    fitting_complete,
    fitting_fail,
    fitting_step_finished,
    fitting_step_retried,
    fitting_step_started,
)

logger = logging.getLogger(__name__)


def run_job(*, job_id: str, attempt: int, engine: str | None = None) -> None:
    """Run one delivery of a job's attempt. Safe to call twice: only one delivery claims it.

    ``engine`` names the engine to run it with (default: FITTING_ENGINE). The job is pinned
    to the identity it was created (or explicitly reprocessed) with: with another engine,
    model or prompt version it fails as ENGINE_MISMATCH before anything is made.
    Every line it logs carries the job id, the attempt, the step and the owner's id.
    """
    owner_id = FittingResult.objects.filter(id=job_id).values_list("owner_id", flat=True).first()
    with log_context(job_id=str(job_id), attempt=attempt, user_id=owner_id):
        _run_delivery(job_id=job_id, attempt=attempt, engine=engine)


def _run_delivery(*, job_id: str, attempt: int, engine: str | None) -> None:
    if not fitting_claim(job_id=job_id, attempt=attempt):
        logger.info("job %s attempt %s: already taken or finished, skipping", job_id, attempt)
        return
    logger.info("job %s attempt %s: claimed", job_id, attempt)
    job = (
        FittingResult.objects.select_related("user_image")
        .prefetch_related("items__item", "images")
        .filter(id=job_id)
        .first()
    )
    if job is None:  # deleted by its owner since the claim
        logger.info("job %s attempt %s: deleted, stopping", job_id, attempt)
        return
    try:
        _run_steps(job, engine_name=engine)
    except (JobSuperseded, StepAbandoned):
        logger.info("job %s attempt %s: superseded, stopping", job_id, attempt)


def _seconds_left(deadline: datetime) -> float:
    return (deadline - timezone.now()).total_seconds()


# Catalogue images decoded in this worker, by content (FITTING_GARMENT_CACHE_MB of pixels):
# every job of the same garment decodes it once per process.
_garments = images.DecodedImages()


def _read_image(field, error: type[JobError], *, garment: bool = False) -> Image.Image:
    try:
        with field.open("rb") as handle:
            data = handle.read()
        # Stored files were checked on the way in; the limits here only guard the worker.
        # Nothing is decoded beyond the working size, so whatever a photo or a catalogue
        # image weighs, a job holds a few images of at most PHOTO_MAX_SIDE.
        limits = {"max_bytes": 10 * settings.UPLOAD_MAX_BYTES, "max_side": settings.PHOTO_MAX_SIDE}
        if garment:
            return _garments.decode(data, budget=settings.FITTING_GARMENT_CACHE_MB * 2**20, **limits)
        # A stored photo or step image is sent on as stored when decoding changed nothing.
        return images.keep_source_jpeg(images.decode(data, **limits), data)
    except Exception as exc:
        raise error() from exc


def _run_steps(job: FittingResult, *, engine_name: str | None) -> None:
    items = job.step_items()
    done: dict[str, FittingResultImage] = {image.step: image for image in job.images.all()}
    step: str | None = job.first_unfinished_step()
    try:
        engine = get_engine(engine_name, prompt_version=job.prompt_version)  # the job's prompts
        if engine.identity != job.engine_identity:
            # Not left for "a right worker": every node takes from one queue, so nothing
            # could route it there. It fails before anything is made, and an explicit
            # reprocess (which records the new identity) switches it.
            raise EngineMismatchError(
                f"The job is pinned to {job.engine_identity}; this worker runs {engine.identity}. "
                "Reprocess it naming the engine to switch (reprocess_failed_fittings --engine NAME)."
            )
        if _seconds_left(job.deadline_at) <= 0:
            raise DeadlineExceeded()
        if job.user_image is None:  # its owner deleted the photo
            raise PhotoUnreadableError()
        # The stored photo's size (a photo stored before PHOTO_MAX_SIDE existed is brought down to it).
        canvas_size = images.fit_size((job.user_image.width, job.user_image.height), settings.PHOTO_MAX_SIDE)
        finished = [done[i.category] for i in items if i.category in done]
        # A resumed attempt starts from the last finished step's output, a new one from the photo.
        last_row = finished[-1] if finished else None
        start = last_row.image if last_row else job.user_image.image
        current = images.to_canvas(_read_image(start, PhotoUnreadableError), canvas_size)
        garments: list[AppliedGarment] = []
        last_step = items[-1].category if items else None
        for job_item in items:
            step = job_item.category
            garment = _read_image(job_item.item.image, ItemImageUnreadableError, garment=True)
            garments.append(AppliedGarment(category=step, image=garment))
            if step in done:
                continue
            with log_context(step=step):
                left = _seconds_left(job.deadline_at)
                if left <= 0:
                    raise DeadlineExceeded()
                # Counts the engine calls that follow (one per candidate with Gemini).
                fitting_step_started(job=job, step=step, calls=calls_for(engine, sample_count(engine, job.num_samples)))
                started = time.monotonic()
                kept = _gated_step(engine, job, person=current, garment=garment, step=step, canvas_size=canvas_size)
                latency_ms = round((time.monotonic() - started) * 1000)
                current = kept.image
                last_row = fitting_step_finished(
                    job=job,
                    step=step,
                    image=current,
                    latency_ms=latency_ms,
                    usage=kept.usage if kept.best is None else {},
                    attempt=kept.attempt if kept.best is None else None,
                    best=kept.best,
                    attempts=kept.attempts,
                    others=kept.others,
                    other_rows=kept.other_rows,
                    candidates=step == last_step,
                )
                logger.info("job %s: step %s made in %s ms", job.id, step, latency_ms)
        step = None
        # No write precedes the message call: ask first, so a canceled job makes no further call.
        if not fitting_is_current(job=job):
            raise JobSuperseded(str(job.id))
        message, message_ms = _write_message(engine, job, Outfit(image=current, garments=tuple(garments)))
        fitting_complete(job=job, last_step_image=last_row, message=message, message_ms=message_ms)
    except (JobSuperseded, StepAbandoned):
        raise
    except JobError as exc:
        with log_context(step=step):
            logger.warning("job %s failed at %s: %s %s", job.id, step, exc.code, exc.message)
            fitting_fail(job=job, step=step, code=exc.code, message=exc.message)
    except Exception as exc:
        # A bug, not an outcome: record it truthfully instead of leaving the job processing.
        with log_context(step=step):
            logger.exception("job %s crashed at %s", job.id, step)
            fitting_fail(job=job, step=step, code=FailureCode.INTERNAL_ERROR, message=_describe(exc))


# --- the quality gate (issue 22) ------------------------------------------------------------
@dataclass
class KeptAttempt:
    """What a step keeps: the passing (or unchecked) ``attempt``, or the stored ``best`` of none.

    numSamples > 1: ``others`` are the other candidates of the kept call, best first, not yet
    stored; ``other_rows`` the same, already stored as rejected (accept_best kept ``best``).
    """

    attempt: AttemptMade
    attempts: int
    best: StepAttempt | None = None
    others: list[AttemptMade] = field(default_factory=list)
    other_rows: list[StepAttempt] = field(default_factory=list)

    @property
    def image(self) -> Image.Image:
        return self.attempt.image

    @property
    def usage(self) -> dict[str, int]:
        return self.attempt.usage


def _gated_step(
    engine: Engine,
    job: FittingResult,
    *,
    person: Image.Image,
    garment: Image.Image,
    step: str,
    canvas_size: tuple[int, int],
) -> KeptAttempt:
    """Call the engine for one step and keep an answer the quality checks pass.

    Each call (a round) asks for the job's numSamples candidates (``fitting.engines.sampling``;
    a deterministic engine makes one). Each answer is fitted to the canvas and assessed
    (``fitting.quality``) before it is stored; the candidates are ranked by (passed, score)
    and the best one is kept. When none passes, they are kept as rejected attempts and the
    step is sent again with the same inputs and new seeds, up to FITTING_QUALITY_RETRIES
    more rounds: never with less than MIN_ATTEMPT_SECONDS of the deadline left, never once
    the job is canceled (asked before each retry: StepAbandoned). A deterministic engine
    (the local one) is checked but never asked again, and its answer is kept whatever the
    checks say. When no round passes: FITTING_QUALITY_POLICY "fail" raises
    QualityCheckFailedError, "accept_best" keeps the best-scoring one (with the rest of its
    round as the other candidates). FITTING_QUALITY_GATE=off: one round, unchecked, the
    candidates in the order they were asked for.
    """
    keep_going = functools.partial(fitting_is_current, job=job)
    gate = settings.FITTING_QUALITY_GATE == "on"
    deterministic = bool(getattr(engine, "deterministic", False))
    count = sample_count(engine, job.num_samples)
    rounds = 1 if not gate or deterministic else 1 + settings.FITTING_QUALITY_RETRIES
    reference = None
    thresholds = None
    rejected: list[tuple[AttemptMade, StepAttempt]] = []
    for number in range(1, rounds + 1):
        left = _seconds_left(job.deadline_at)
        if number > 1:
            if left <= MIN_ATTEMPT_SECONDS:
                logger.warning("job %s: no time left for another attempt of %s", job.id, step)
                break
            if not keep_going():
                raise StepAbandoned()
            fitting_step_retried(job=job, calls=calls_for(engine, count))  # round 1: fitting_step_started
        elif left <= 0:
            raise DeadlineExceeded()
        seeds = [None] if deterministic else step_seeds(job, number=number, count=count)
        started = time.monotonic()
        samples = apply_garment_samples(
            engine,
            person=person,
            garment=garment,
            category=step,
            canvas_size=canvas_size,
            timeout=left,
            keep_going=keep_going,
            seeds=seeds,
        )
        latency_ms = round((time.monotonic() - started) * 1000)
        made = [
            AttemptMade(
                number=number,
                sample=sample.index,
                seed=_seed_of(engine, seeds, sample.index),
                image=images.to_canvas(sample.result.image, canvas_size),  # the one place a step's image is fitted
                latency_ms=latency_ms,
                usage=dict(sample.result.usage),
            )
            for sample in samples
        ]
        if not gate:
            return KeptAttempt(attempt=made[0], attempts=number, others=made[1:])
        from fitting import quality  # OpenCV: only in the worker, and only with the gate on

        if reference is None:
            reference = quality.prepare(person, garment, step)
            thresholds = quality.Thresholds.from_dict(settings.FITTING_QUALITY_THRESHOLDS)
        for attempt in made:
            assessment = quality.assess_answer(reference, attempt.image, thresholds)
            attempt.scores, attempt.passed, attempt.score = assessment.as_json(), assessment.passed, assessment.score
            logger.info(
                "job %s: %s attempt %s candidate %s %s (score %.2f%s)",
                job.id,
                step,
                number,
                attempt.sample,
                "passed" if assessment.passed else "failed",
                assessment.score,
                f"; failed {', '.join(assessment.failed)}" if assessment.failed else "",
            )
        ranked = sorted(made, key=lambda attempt: attempt.rank_key, reverse=True)  # stable: ties by sample
        best = ranked[0]
        if best.passed:
            _judge(job, best, person=person, garment=garment, step=step)
            return KeptAttempt(attempt=best, attempts=number, others=ranked[1:])
        if deterministic:
            return KeptAttempt(attempt=best, attempts=number, others=ranked[1:])
        rejected += [(attempt, fitting_attempt_rejected(job=job, step=step, attempt=attempt)) for attempt in ranked]
    if not rejected:  # pragma: no cover - the loop makes at least one attempt or raises
        raise DeadlineExceeded()
    if settings.FITTING_QUALITY_POLICY == "accept_best":
        best, row = max(rejected, key=lambda pair: pair[0].score)
        logger.warning("job %s: no attempt of %s passed; keeping attempt %s", job.id, step, best.number)
        round_mates = [pair for pair in rejected if pair[0].number == best.number and pair[1] is not row]
        round_mates.sort(key=lambda pair: pair[0].score, reverse=True)
        rounds_made = max(attempt.number for attempt, _ in rejected)
        return KeptAttempt(
            attempt=best, attempts=rounds_made, best=row, other_rows=[mate_row for _, mate_row in round_mates]
        )
    failed = ", ".join(sorted({name for attempt, _ in rejected for name in attempt.scores.get("failed", [])}))
    raise QualityCheckFailedError(
        f"No attempt of {step} passed the quality checks in {len(rejected)} call(s): {failed}"
    )


def _seed_of(engine: Engine, seeds: list[int | None], index: int) -> int | None:
    """The seed candidate ``index`` was made with; None when none was sent.

    An engine making the candidates in one call sends at most one seed and says which
    (``sent_seed``: the try-on model sends none with its watermark on); any other engine's
    candidate k is asked with ``seeds[k]``.
    """
    return engine.sent_seed(seeds) if hasattr(engine, "apply_garment_samples") else seeds[index]


SEED_RANGE = 2**31  # seeds are 0 to 2**31 - 1 (what the models take)


def step_seeds(job: FittingResult, *, number: int, count: int) -> list[int]:
    """The seeds of round ``number`` (1, 2, …) of a step: one per candidate.

    A seeded job's are derived from its seed, so it is repeatable: candidate k of the first
    round uses seed + k, of round r seed + count*(r-1) + k (modulo 2**31). Without a seed,
    random ones: a retry answers differently.
    """
    if job.seed is None:
        return [secrets.randbelow(SEED_RANGE) for _ in range(count)]
    return [(job.seed + count * (number - 1) + k) % SEED_RANGE for k in range(count)]


def _judge(job: FittingResult, attempt: AttemptMade, *, person: Image.Image, garment: Image.Image, step: str) -> None:
    """FITTING_QUALITY_JUDGE=gemini: the text model's verdict, recorded with the attempt's scores.

    Its tokens go with the attempt's usage under ``costs.JUDGE_PREFIX`` (the job's cost prices
    them at the text model's rate), an answer that was not a verdict's included. It never
    fails the step: a failed or timed-out call, or no verdict, is recorded as ``"judge": null``.
    """
    if settings.FITTING_QUALITY_JUDGE != "gemini":
        return
    from fitting.quality.judge import judge  # google-genai: only when a judge is configured

    budget = min(settings.FITTING_MESSAGE_TIMEOUT, _seconds_left(job.deadline_at) - MIN_ATTEMPT_SECONDS)
    said = judge(
        person=person,
        garment=garment,
        answer=attempt.image,
        category=step,
        timeout=budget,
        keep_going=functools.partial(fitting_is_current, job=job),  # no retry for a canceled job
    )
    attempt.scores = {**attempt.scores, "judge": said.verdict if said is not None else None}
    if said is not None:
        attempt.usage = {**attempt.usage, **{costs.JUDGE_PREFIX + name: count for name, count in said.usage.items()}}


def _describe(exc: BaseException) -> str:
    """The exception and its cause, for staff (users see only the code's generic message)."""
    text = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        text += f" (caused by {type(exc.__cause__).__name__}: {exc.__cause__})"
    return text


def _write_message(engine: Engine, job: FittingResult, outfit: Outfit) -> tuple[str | None, int | None]:
    """The recommendation message and its latency in ms; None when it failed or had no time.

    The one place the message's budget and failures are handled, for every engine: the
    engine gets FITTING_MESSAGE_TIMEOUT, or what is left of the job's deadline if that is
    less; with MIN_ATTEMPT_SECONDS or less left it is not asked at all. A failed message
    never fails the job.
    """
    budget = min(settings.FITTING_MESSAGE_TIMEOUT, _seconds_left(job.deadline_at))
    if budget <= MIN_ATTEMPT_SECONDS:
        logger.warning("job %s: no time left for the message", job.id)
        return None, None
    started = time.monotonic()
    try:
        message = engine.write_message(
            outfit=outfit, timeout=budget, keep_going=functools.partial(fitting_is_current, job=job)
        )
    except Exception:
        logger.warning("job %s: message failed", job.id, exc_info=True)
        message = None
    return message, round((time.monotonic() - started) * 1000)
