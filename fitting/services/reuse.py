"""Work already done: a repeat request completes from an earlier result, a shared prefix of steps is reused."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from fitting import metrics, notify
from fitting.engines.identity import EngineIdentity
from fitting.models import FittingResult, FittingResultImage, ImageStep, Item, JobEvent, Status, StepAttempt
from users.models import UserImage

logger = logging.getLogger(__name__)

# What the quality gate records in a step's metrics (services.progress), kept by a reused step.
QUALITY_METRICS = ("attempts", "quality_passed", "quality")


def result_cache_key(
    *,
    photo: UserImage,
    items: list[Item],
    engine: str,
    model: str,
    prompt_version: str,
    num_samples: int = 1,
    seed: int | None = None,
) -> str:
    """What makes two jobs give the same result; "" when a content hash is unknown.

    numSamples and the seed (issue 23) are part of it only when they are not the default
    (1, none), so the keys of jobs made before them stay the same: a result made with one
    candidate never answers a request for four, nor one made with another seed (or none).
    """
    hashes = [photo.content_hash, *(item.content_hash for item in items)]
    if not all(hashes):
        return ""
    parts = [photo.content_hash, engine, model, prompt_version]
    parts += [f"{item.category}:{item.content_hash}" for item in items]
    if num_samples != 1:
        parts.append(f"samples:{num_samples}")
    if seed is not None:
        parts.append(f"seed:{seed}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _prefix_keys(
    *, photo: UserImage, items: list[Item], identity: EngineIdentity, num_samples: int = 1, seed: int | None = None
) -> list[str]:
    """Per step (items in step order): the key of what the steps up to it make of the photo.

    The result-cache key of the job's first k garments: the same photo content, garments,
    engine identity, numSamples and seed make the same image (the best of as many
    candidates, from the same seeds). "" for every step when a content hash is unknown.
    """
    return [
        result_cache_key(
            photo=photo,
            items=items[:k],
            engine=identity.name,
            model=identity.model,
            prompt_version=identity.prompt_version,
            num_samples=num_samples,
            seed=seed,
        )
        for k in range(1, len(items) + 1)
    ]


def step_prefix_key(job: FittingResult, step: str) -> str:
    """The prefix key of ``job``'s image of ``step`` (from its photo and items as stored)."""
    if job.user_image is None:
        return ""
    items = [job_item.item for job_item in job.step_items()]
    keys = _prefix_keys(
        photo=job.user_image, items=items, identity=job.engine_identity, num_samples=job.num_samples, seed=job.seed
    )
    return next((key for item, key in zip(items, keys, strict=True) if item.category == step), "")


def job_cache_key(job: FittingResult, identity: EngineIdentity) -> str:
    """``job``'s result-cache key were it made by ``identity`` (its photo and items as stored)."""
    items = [job_item.item for job_item in job.step_items()]
    return result_cache_key(
        photo=job.user_image,
        items=items,
        engine=identity.name,
        model=identity.model,
        prompt_version=identity.prompt_version,
        num_samples=job.num_samples,
        seed=job.seed,
    )


def _hold_source(job_id) -> bool:
    """Lock the source job so that it cannot be deleted before this transaction commits.

    Deleting a job locks it first, and deletes its files after its commit only if no row
    names them: once this transaction's rows name them, they stay. NOWAIT: a source being
    deleted (or written by its worker) right now is skipped rather than waited for, so no
    lock cycle can form with a deletion that holds the jobs and waits for a photo. False
    when the job is gone or busy. (SQLite serialises writers: nothing to lock there.)
    """
    try:
        with transaction.atomic():
            return FittingResult.objects.select_for_update(no_key=True, nowait=True).filter(id=job_id).exists()
    except DatabaseError:
        return False


def reuse_prefix(job: FittingResult, *, photo: UserImage, items: list[Item]) -> int:
    """Give ``job`` the images of its longest prefix of steps another job already made.

    Steps run in a fixed order, so a job's first k steps are the same work as another job's
    first k steps with the same photo content, garments and engine identity. The source is
    the owner's own jobs unless ``FITTING_RESULT_CACHE_SCOPE`` is "global"; its rows are
    shared as new rows on the same files (never copied), marked ``cached`` in the job's
    step metrics, and the pipeline resumes after them. Returns how many steps were reused.
    """
    if not settings.FITTING_STEP_CACHE:
        return 0
    keys = _prefix_keys(
        photo=photo, items=items, identity=job.engine_identity, num_samples=job.num_samples, seed=job.seed
    )
    if not all(keys):
        return 0
    sources = FittingResultImage.objects.exclude(job_id=job.id)
    if settings.FITTING_RESULT_CACHE_SCOPE == "owner":
        sources = sources.filter(job__owner_id=job.owner_id)
    for k in range(len(keys), 0, -1):
        newest = sources.filter(prefix_key=keys[k - 1]).order_by("-id").first()
        if newest is None or not _hold_source(newest.job_id):
            continue
        # A job's k-th step image exists only with its earlier ones (steps run in order).
        rows = list(FittingResultImage.objects.filter(job_id=newest.job_id, prefix_key__in=keys[:k]))
        if len(rows) != k:
            continue
        FittingResultImage.objects.bulk_create(
            FittingResultImage(
                job=job,
                step=row.step,
                image=row.image.name,
                width=row.width,
                height=row.height,
                prefix_key=row.prefix_key,
            )
            for row in rows
        )
        source_metrics = FittingResult.objects.filter(id=newest.job_id).values_list("step_metrics", flat=True).first()
        reused = {row.step: _reused_step(row.job_id, (source_metrics or {}).get(row.step)) for row in rows}
        if k == len(keys):  # the last step too: its candidates (numSamples > 1) come with it
            _share_candidates(source_id=newest.job_id, job=job, steps=[row.step for row in rows])
        FittingResult.objects.filter(id=job.id).update(step_metrics=reused)
        job.step_metrics = reused
        metrics.count_steps_reused(steps=[row.step for row in rows])
        logger.info("job %s: %s step(s) reused from job %s", job.id, k, newest.job_id)
        return k
    return 0


def _reused_step(source_id, recorded: dict | None) -> dict:
    """A reused step's metrics: from which job, and what the quality gate recorded of it there
    (its attempts and scores: a reused step keeps them)."""
    kept = {key: (recorded or {})[key] for key in QUALITY_METRICS if key in (recorded or {})}
    return {"cached": True, "source_job": str(source_id), "latency_ms": 0, **kept}


def _share_candidates(*, source_id, job: FittingResult, steps: list[str] | None = None) -> None:
    """Give ``job`` the source's candidates (of ``steps``, default all) as new rows on the same files."""
    rows = StepAttempt.objects.filter(job_id=source_id, candidate_rank__isnull=False)
    if steps is not None:
        rows = rows.filter(category__in=steps)
    StepAttempt.objects.bulk_create(
        StepAttempt(
            job=job,
            category=row.category,
            number=row.number,
            sample=row.sample,
            seed=row.seed,
            scores=row.scores,
            passed=row.passed,
            outcome=row.outcome,
            image=row.image.name,
            candidate_rank=row.candidate_rank,
            shared=True,  # no call of this job: the dashboard's figures leave it out
        )
        for row in rows
    )


def complete_from_cache(job: FittingResult) -> bool:
    """Complete ``job`` from an earlier completed job with the same cache key, if any.

    Only the owner's own jobs count unless ``FITTING_RESULT_CACHE_SCOPE`` is "global". The
    source must also be pinned to the same engine, model and prompt version as ``job``
    (the key includes them; this also holds should a stored key ever be stale).
    """
    if not (settings.FITTING_RESULT_CACHE and job.cache_key):
        return False
    sources = FittingResult.objects.filter(
        cache_key=job.cache_key,
        status=Status.COMPLETED,
        engine=job.engine,
        model=job.model,
        prompt_version=job.prompt_version,
    )
    if settings.FITTING_RESULT_CACHE_SCOPE == "owner":
        sources = sources.filter(owner_id=job.owner_id)
    source = sources.exclude(id=job.id).order_by("-finished_at").first()
    if source is None:
        return False
    # New rows on the same files: the images are shared, never copied.
    FittingResultImage.objects.bulk_create(
        FittingResultImage(job=job, step=image.step, image=image.image.name, width=image.width, height=image.height)
        for image in source.images.all()
    )
    _share_candidates(source_id=source.id, job=job)  # numSamples > 1: the source's candidates
    # Every step is reused: marked as reuse_prefix marks one (the job's steps say cached: true).
    reused = {
        image.step: _reused_step(source.id, source.step_metrics.get(image.step))
        for image in source.images.all()
        if image.step != ImageStep.FINAL
    }
    now = timezone.now()
    FittingResult.objects.filter(id=job.id).update(
        status=Status.COMPLETED,
        cached=True,
        step_metrics=reused,
        llm_message=source.llm_message,
        started_at=now,
        finished_at=now,
        updated_at=now,
    )
    job.refresh_from_db()
    metrics.count_job_ended(job=job, status=Status.COMPLETED, cache_hit=True)
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.COMPLETED)
    return True
