"""Writes of the fitting app: start a job, record its progress, end it, reprocess it."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from pathlib import Path

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.tasks import async_task
from PIL import Image

from core import images
from core.errors import (
    DuplicateCategoryError,
    ErrorCode,
    IdempotencyKeyReusedError,
    InsufficientItemsError,
    InvalidCategoryError,
    InvalidItemIdError,
    JobEngineMismatchError,
    JobFinishedError,
    JobPhotoDeletedError,
    NotReprocessableError,
    PhotoInUseError,
    PhotoRequiredError,
    QuotaExceededError,
    TooManyItemsError,
)
from core.files import file_delete_quietly, file_store_new, files_delete_unreferenced
from core.logcontext import log_context
from core.media import media_name
from fitting import costs, metrics, notify
from fitting.engines import engine_identity
from fitting.engines.identity import EngineIdentity
from fitting.models import (
    DEFAULT_WEBHOOK_EVENTS,
    STEP_ORDER,
    Category,
    FittingResult,
    FittingResultImage,
    FittingResultItem,
    ImageStep,
    Item,
    JobEvent,
    Status,
    WebhookEvent,
)
from fitting.webhooks import webhook_url_check
from users.models import UserImage
from users.selectors import photo_get_by_url, user_daily_job_quota

logger = logging.getLogger(__name__)

MAX_ITEMS = 3
RUN_TASK = "fitting.tasks.run_fitting"
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class RequestedItem:
    item_id: int
    category: str
    image_url: str | None = None


@dataclass(frozen=True)
class WebhookRequest:
    """Where to POST the job's events, which ones, and the origin its image URLs are made on."""

    url: str
    events: Iterable[str] | None = None  # None: the default ones; kept deduplicated, in catalogue order
    origin: str = ""

    def __post_init__(self):
        wanted = set(DEFAULT_WEBHOOK_EVENTS if self.events is None else self.events)
        object.__setattr__(self, "events", tuple(e for e in WebhookEvent.values if e in wanted))


class JobSuperseded(Exception):
    """The job is no longer this attempt's to write (ended by the sweep, or reprocessed)."""


# --- the catalogue ------------------------------------------------------------------------
def item_image_check(data: bytes) -> str:
    """Check that ``data`` is an acceptable garment image (a coded error if not); its content hash."""
    images.decode(data)
    return images.sha256_hex(data)


def item_save(*, item: Item, image: File | None = None) -> Item:
    """Create or update a catalogue item; a new ``image`` is checked, hashed and stored first.

    The content hash is part of the result-cache key, so it always follows the stored file.
    A row that cannot be saved takes its new file with it.
    """
    if image is None:
        item.save()
        return item
    image.seek(0)
    data = image.read()
    item.content_hash = item_image_check(data)
    file_store_new(item.image, Path(image.name).name, data)
    try:
        item.save()
    except BaseException:
        file_delete_quietly(item.image.storage, item.image.name)
        raise
    return item


# --- start --------------------------------------------------------------------------------
def fitting_validate(*, user: AbstractBaseUser, photo_url: str | None, items: list[RequestedItem]):
    """Check a request in the seed's order; return the photo and the items in step order."""
    photo = photo_get_by_url(owner=user, url=photo_url) if photo_url else None
    if photo is None:
        raise PhotoRequiredError(field="userPhotoUrl")
    if len(items) < 1:
        raise InsufficientItemsError(field="items")
    if len(items) > MAX_ITEMS:
        raise TooManyItemsError(field="items")
    seen: set[str] = set()
    for index, requested in enumerate(items):
        if requested.category in seen:
            raise DuplicateCategoryError(field=f"items[{index}].category")
        seen.add(requested.category)
    for index, requested in enumerate(items):
        if requested.category not in Category.values:
            raise InvalidCategoryError(field=f"items[{index}].category")
    found = Item.objects.in_bulk([r.item_id for r in items])
    for index, requested in enumerate(items):
        item = found.get(requested.item_id)
        if item is None or not item.is_active:
            raise InvalidItemIdError(field=f"items[{index}].itemId")
        if requested.image_url and not _same_file(requested.image_url, item.image.name):
            raise InvalidItemIdError(_("imageUrl is not the image of this item."), field=f"items[{index}].imageUrl")
    for index, requested in enumerate(items):
        if found[requested.item_id].category != requested.category:
            raise InvalidCategoryError(_("The category is not the item's own."), field=f"items[{index}].category")
    ordered = sorted((found[r.item_id] for r in items), key=lambda i: STEP_ORDER.index(i.category))
    return photo, ordered


def _same_file(url: str, name: str) -> bool:
    """Whether ``url`` is a URL of the stored file ``name`` (a pre-signed one with or without its signature)."""
    return media_name(url) == name


def _result_cache_key(*, photo: UserImage, items: list[Item], engine: str, model: str, prompt_version: str) -> str:
    """What makes two jobs give the same result; "" when a content hash is unknown."""
    hashes = [photo.content_hash, *(item.content_hash for item in items)]
    if not all(hashes):
        return ""
    parts = [photo.content_hash, engine, model, prompt_version]
    parts += [f"{item.category}:{item.content_hash}" for item in items]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _request_fingerprint(*, photo_url: str | None, items: list[RequestedItem], webhook: WebhookRequest | None) -> str:
    fields = {"userPhotoUrl": photo_url, "items": [[i.item_id, i.category, i.image_url] for i in items]}
    if webhook is not None:  # only then: keys stored before webhooks existed keep their fingerprint
        fields["webhook"] = [webhook.url, sorted(webhook.events)]
    canonical = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def fitting_start(
    *,
    user: AbstractBaseUser,
    photo_url: str | None,
    items: list[RequestedItem],
    idempotency_key: str | None = None,
    webhook: WebhookRequest | None = None,
) -> tuple[FittingResult, bool]:
    """Validate, create the job and its items, and enqueue it once the transaction commits.

    Returns ``(job, replayed)``: with an ``idempotency_key`` already used by this user in
    the last 24 hours for the same request, the earlier job and True. A repeat of an
    earlier completed result (same photo and garment content, engine, model and prompt
    version) completes at once from the stored images, without the engine. With a
    ``webhook``, its URL is checked (INVALID_WEBHOOK_URL) after the photo and the items.
    """
    fingerprint = _request_fingerprint(photo_url=photo_url, items=items, webhook=webhook) if idempotency_key else ""
    if idempotency_key:
        earlier = _job_for_idempotency_key(user=user, key=idempotency_key, fingerprint=fingerprint)
        if earlier is not None:
            return earlier, True
    try:
        with transaction.atomic():
            return _create_job(
                user=user,
                photo_url=photo_url,
                items=items,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                webhook=webhook,
            ), False
    except IntegrityError:
        if not idempotency_key:
            raise
        # Two requests with one new key at once: the other one created the job.
        earlier = _job_for_idempotency_key(user=user, key=idempotency_key, fingerprint=fingerprint)
        if earlier is None:
            raise
        return earlier, True


def _job_for_idempotency_key(*, user, key: str, fingerprint: str) -> FittingResult | None:
    earlier = FittingResult.objects.filter(owner=user, idempotency_key=key).first()
    if earlier is None:
        return None
    if earlier.created_at < timezone.now() - IDEMPOTENCY_WINDOW:
        # Expired: the key is free again.
        FittingResult.objects.filter(id=earlier.id).update(idempotency_key=None)
        return None
    if earlier.request_hash != fingerprint:
        raise IdempotencyKeyReusedError(field="Idempotency-Key")
    return earlier


def _create_job(*, user, photo_url, items, idempotency_key, fingerprint, webhook) -> FittingResult:
    photo, ordered = fitting_validate(user=user, photo_url=photo_url, items=items)
    if webhook is not None:
        webhook_url_check(webhook.url)  # resolves the host: before any row is locked or written
    if not _lock(UserImage.objects.filter(id=photo.id)):  # deleted meanwhile (photo_delete holds the lock)
        raise PhotoRequiredError(field="userPhotoUrl")
    identity = engine_identity()
    now = timezone.now()
    job = FittingResult.objects.create(
        owner=user,
        user_image=photo,
        engine=identity.name,
        model=identity.model,
        prompt_version=identity.prompt_version,
        cache_key=_result_cache_key(
            photo=photo,
            items=ordered,
            engine=identity.name,
            model=identity.model,
            prompt_version=identity.prompt_version,
        ),
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        webhook_url=webhook.url if webhook else "",
        webhook_events=list(webhook.events) if webhook else [],
        request_origin=webhook.origin if webhook else "",
        deadline_at=now + timedelta(seconds=settings.FITTING_JOB_TIMEOUT),
        enqueued_at=now,
    )
    FittingResultItem.objects.bulk_create(
        FittingResultItem(job=job, item=item, category=item.category, order=order)
        for order, item in enumerate(ordered, start=1)
    )
    with log_context(job_id=str(job.id), attempt=job.attempt, user_id=user.pk):
        if _complete_from_cache(job):
            logger.info("job %s: completed from the result cache", job.id)
            return job  # free: no engine call, so not counted against the quota
        _check_daily_quota(job)
        _reuse_prefix(job, photo=photo, items=ordered)
        fitting_enqueue_on_commit(job=job)
        logger.info("job %s: accepted", job.id)
    return job


def _check_daily_quota(job: FittingResult) -> None:
    """Refuse ``job`` (QUOTA_EXCEEDED) when its owner already started their day's quota of jobs.

    Counted: the owner's jobs created since the start of the day (in TIME_ZONE) that were not
    whole-result cache hits, i.e. that call the engine (a job whose every step is reused still
    asks for its message). The owner's row is the lock: two starts at once count one after
    the other. Raised inside the start's transaction, so the refused job is rolled back.
    """
    quota = user_daily_job_quota(user=job.owner)
    if not quota:
        return
    # NO KEY UPDATE: serialises the owner's quota checks, yet does not wait on the KEY SHARE
    # lock that inserting a job (its foreign key) takes, so two starts cannot deadlock.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=job.owner_id).exists()
    now = timezone.localtime()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    used = (
        FittingResult.objects.filter(owner_id=job.owner_id, created_at__gte=day_start, cached=False)
        .exclude(id=job.id)
        .count()
    )
    if used < quota:
        return
    logger.info("user %s: daily quota of %s jobs reached", job.owner_id, quota)
    resets_at = day_start + timedelta(days=1)
    raise QuotaExceededError(
        _("You have started %(count)d fittings today, your daily limit. It resets at %(time)s.")
        % {"count": quota, "time": resets_at.isoformat()},
        headers={"Retry-After": str(max(1, math.ceil((resets_at - now).total_seconds())))},
    )


def _prefix_keys(*, photo: UserImage, items: list[Item], identity: EngineIdentity) -> list[str]:
    """Per step (items in step order): the key of what the steps up to it make of the photo.

    The result-cache key of the job's first k garments: the same photo content, garments
    and engine identity make the same image. "" for every step when a content hash is unknown.
    """
    return [
        _result_cache_key(
            photo=photo,
            items=items[:k],
            engine=identity.name,
            model=identity.model,
            prompt_version=identity.prompt_version,
        )
        for k in range(1, len(items) + 1)
    ]


def _step_prefix_key(job: FittingResult, step: str) -> str:
    """The prefix key of ``job``'s image of ``step`` (from its photo and items as stored)."""
    if job.user_image is None:
        return ""
    items = sorted((job_item.item for job_item in job.items.all()), key=lambda i: STEP_ORDER.index(i.category))
    keys = _prefix_keys(photo=job.user_image, items=items, identity=job.engine_identity)
    return next((key for item, key in zip(items, keys, strict=True) if item.category == step), "")


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


def _reuse_prefix(job: FittingResult, *, photo: UserImage, items: list[Item]) -> int:
    """Give ``job`` the images of its longest prefix of steps another job already made.

    Steps run in a fixed order, so a job's first k steps are the same work as another job's
    first k steps with the same photo content, garments and engine identity. The source is
    the owner's own jobs unless ``FITTING_RESULT_CACHE_SCOPE`` is "global"; its rows are
    shared as new rows on the same files (never copied), marked ``cached`` in the job's
    step metrics, and the pipeline resumes after them. Returns how many steps were reused.
    """
    if not settings.FITTING_STEP_CACHE:
        return 0
    keys = _prefix_keys(photo=photo, items=items, identity=job.engine_identity)
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
        reused = {row.step: {"cached": True, "source_job": str(row.job_id), "latency_ms": 0} for row in rows}
        FittingResult.objects.filter(id=job.id).update(step_metrics=reused)
        job.step_metrics = reused
        metrics.count_steps_reused(steps=[row.step for row in rows])
        logger.info("job %s: %s step(s) reused from job %s", job.id, k, newest.job_id)
        return k
    return 0


def _complete_from_cache(job: FittingResult) -> bool:
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
    now = timezone.now()
    FittingResult.objects.filter(id=job.id).update(
        status=Status.COMPLETED,
        cached=True,
        llm_message=source.llm_message,
        started_at=now,
        finished_at=now,
        updated_at=now,
    )
    job.refresh_from_db()
    metrics.count_job_ended(job=job, status=Status.COMPLETED, cache_hit=True)
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.COMPLETED)
    return True


def fitting_enqueue_on_commit(*, job: FittingResult) -> None:
    job_id, attempt = str(job.id), job.attempt
    transaction.on_commit(lambda: fitting_enqueue(job_id=job_id, attempt=attempt))


def fitting_enqueue(*, job_id: str, attempt: int) -> None:
    # By dotted path, so the web process never imports the pipeline or an engine.
    async_task(RUN_TASK, job_id, attempt, task_name=f"fitting-{job_id}-{attempt}")


# --- progress: every write is conditional on the job still being this attempt's -----------
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


def fitting_step_started(*, job: FittingResult, step: str) -> None:
    _write_if_current_attempt(job, current_step=step)
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.STEP_STARTED)


def fitting_step_finished(
    *, job: FittingResult, step: str, image: Image.Image, latency_ms: int, usage: dict[str, int]
) -> FittingResultImage:
    """Store the step's image and its timing in one transaction; on failure, no file is left."""
    row = FittingResultImage(
        job=job, step=step, width=image.width, height=image.height, prefix_key=_step_prefix_key(job, step)
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
    status = Status.TIMEOUT if code == ErrorCode.TIMEOUT else Status.FAILED
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


# --- cancel -----------------------------------------------------------------------------------
@transaction.atomic
def fitting_cancel(*, job: FittingResult) -> FittingResult:
    """Cancel a processing job: ``status=canceled``, ``finished_at`` set; a canceled one is returned as is.

    A finished job (completed, failed, timed out) raises JobFinishedError. Queued or running
    alike: the worker's every write is conditional on the job still processing, so a worker
    that has not claimed it never starts it, and a running one stops at its next write, which
    comes before its next engine call; the answer of an engine call in flight is not stored
    (its file is deleted). ``current_step`` is cleared and ``failed_step`` stays null (nothing
    failed); the step images already made stay, so a reprocess naming the job resumes after them.
    """
    now = timezone.now()
    updated = FittingResult.objects.filter(id=job.id, status=Status.PROCESSING).update(
        status=Status.CANCELED, current_step=None, finished_at=now, updated_at=now
    )
    current = FittingResult.objects.filter(id=job.id).first()
    if current is None:  # deleted meanwhile: nothing to cancel (the API's re-read answers 404)
        return job
    if updated:
        metrics.count_job_ended(job=current, status=Status.CANCELED)
        notify.job_changed_on_commit(job_id=job.id, event=JobEvent.CANCELED)
        return current
    if current.status == Status.CANCELED:
        return current
    raise JobFinishedError()


# --- the sweep: jobs whose worker died, and queue messages that were lost ---------------------
def fitting_sweep_expired() -> int:
    """End as ``timeout`` the jobs still processing past their deadline plus the grace.

    The step they were in is recorded; a job whose attempt moved on meanwhile is left alone.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.FITTING_SWEEP_GRACE)
    expired = FittingResult.objects.filter(status=Status.PROCESSING, deadline_at__lt=cutoff).prefetch_related(
        "items", "images"
    )
    count = 0
    for job in expired:
        step = job.current_step or job.first_unfinished_step()
        with log_context(job_id=str(job.id), attempt=job.attempt, step=step, user_id=job.owner_id):
            try:
                fitting_fail(
                    job=job,
                    step=step,
                    code=ErrorCode.TIMEOUT,
                    message="The job did not finish before its deadline (its worker stopped or stalled).",
                )
            except JobSuperseded:
                continue
            logger.warning("job %s: ended as timeout by the sweep (at %s)", job.id, step)
        count += 1
    if count:
        logger.warning("sweep: %s job(s) ended as timeout", count)
    return count


def fitting_requeue_lost() -> int:
    """Enqueue again the jobs never started ``FITTING_REQUEUE_AFTER`` after being enqueued.

    The Redis broker delivers at most once. Only the sweep that moves ``enqueued_at`` enqueues;
    a late original delivery is dropped by the claim.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.FITTING_REQUEUE_AFTER)
    lost = FittingResult.objects.filter(
        status=Status.PROCESSING, started_at__isnull=True, enqueued_at__lt=stale, deadline_at__gt=now
    ).values_list("id", "attempt", "enqueued_at")
    count = 0
    for job_id, attempt, enqueued_at in lost:
        if FittingResult.objects.filter(id=job_id, enqueued_at=enqueued_at, started_at__isnull=True).update(
            enqueued_at=now
        ):
            fitting_enqueue(job_id=str(job_id), attempt=attempt)
            count += 1
    if count:
        logger.warning("sweep: %s job(s) enqueued again", count)
    return count


# --- reprocess ------------------------------------------------------------------------------
REPROCESSABLE = (Status.FAILED, Status.TIMEOUT)


def fitting_reprocess_switch(*, job: FittingResult, engine: str | None) -> EngineIdentity | None:
    """The identity a reprocess of ``job`` switches it to; None when it keeps its own.

    Without ``engine`` the job must be pinned to this process's engine (FITTING_ENGINE,
    its model and prompt version): otherwise JobEngineMismatchError, since running it here
    (or leaving it to workers configured like this process) would fail it as
    ENGINE_MISMATCH. With ``engine`` it is that engine's identity, if it differs.
    """
    if engine is None:
        here = engine_identity()
        if job.engine_identity != here:
            raise JobEngineMismatchError(
                _("The job was made by %(job)s; this process runs %(here)s. Name the engine to switch to.")
                % {"job": job.engine_identity, "here": here}
            )
        return None
    target = engine_identity(engine)
    return target if target != job.engine_identity else None


@transaction.atomic
def fitting_reprocess(
    *,
    job: FittingResult,
    restart: bool = False,
    enqueue: bool = True,
    engine: str | None = None,
    allow_canceled: bool = False,
) -> FittingResult:
    """Run a failed or timed-out job again, as a new attempt with a fresh time budget.

    A canceled job is run again only with ``allow_canceled``: when someone named it (the
    command's JOB_IDs, the admin's selection), never by a sweep over statuses.

    By default it resumes after the last finished step, reusing the step images already
    made; ``restart`` drops them and starts from the first step. With ``enqueue`` the new
    attempt goes to the queue once this commits; without, the caller runs it
    (``fitting.pipeline.run_job``). The admin actions and ``reprocess_failed_fittings``
    both come here.

    ``engine`` ("local", "gemini") switches the job to that engine explicitly: its new
    identity (engine, model, prompt version) and cache key are recorded, and it restarts
    from scratch, since the earlier step images were made by the old engine. Without it,
    a job pinned to another engine than this process's is refused (see
    ``fitting_reprocess_switch``).
    """
    with log_context(job_id=str(job.id), attempt=job.attempt, user_id=job.owner_id):
        return _reprocess(job=job, restart=restart, enqueue=enqueue, engine=engine, allow_canceled=allow_canceled)


def _reprocess(
    *, job: FittingResult, restart: bool, enqueue: bool, engine: str | None, allow_canceled: bool
) -> FittingResult:
    if job.user_image_id is None:
        raise JobPhotoDeletedError()
    switch = fitting_reprocess_switch(job=job, engine=engine)
    restart = restart or switch is not None
    identity = switch or job.engine_identity
    now = timezone.now()
    job_images = FittingResultImage.objects.filter(job=job)
    if restart:
        _delete_images(job_images)
    else:
        _delete_images(job_images.filter(step=ImageStep.FINAL))
    statuses = [*REPROCESSABLE, Status.CANCELED] if allow_canceled else list(REPROCESSABLE)
    updated = FittingResult.objects.filter(id=job.id, attempt=job.attempt, status__in=statuses).update(
        status=Status.PROCESSING,
        attempt=F("attempt") + 1,
        engine=identity.name,
        model=identity.model,
        prompt_version=identity.prompt_version,
        cache_key=_job_cache_key(job, identity) if switch else job.cache_key,
        current_step=None,
        failed_step=None,
        error_code="",
        error_message="",
        llm_message=None,
        cached=False,
        step_metrics={} if restart else job.step_metrics,
        started_at=None,
        finished_at=None,
        enqueued_at=now,
        deadline_at=now + timedelta(seconds=settings.FITTING_JOB_TIMEOUT),
        updated_at=now,
    )
    if not updated:
        raise NotReprocessableError()
    job.refresh_from_db()
    logger.info("job %s: reprocessed as attempt %s (%s)", job.id, job.attempt, "restart" if restart else "resume")
    notify.job_changed_on_commit(job_id=job.id, event=JobEvent.REQUEUED)
    if enqueue:
        fitting_enqueue_on_commit(job=job)
    return job


def _job_cache_key(job: FittingResult, identity: EngineIdentity) -> str:
    """``job``'s result-cache key were it made by ``identity`` (its photo and items as stored)."""
    items = sorted(
        (job_item.item for job_item in job.items.select_related("item")), key=lambda i: STEP_ORDER.index(i.category)
    )
    return _result_cache_key(
        photo=job.user_image,
        items=items,
        engine=identity.name,
        model=identity.model,
        prompt_version=identity.prompt_version,
    )


def _delete_images(rows) -> None:
    """Delete image rows, and their files unless another row (a cached job) still uses them."""
    names = list(rows.values_list("image", flat=True))
    rows.delete()
    files_delete_unreferenced(names)


# --- erasure: a job, a photo, a user, with their files ------------------------------------
def _lock(rows: QuerySet) -> bool:
    """Lock ``rows`` until the transaction ends (PostgreSQL; SQLite writers are serialised
    anyway); False when there are none."""
    return bool(list(rows.select_for_update().values_list("pk", flat=True)))


def _jobs_delete(jobs: QuerySet[FittingResult]) -> None:
    """Delete jobs with their rows; their files go after the commit unless another row names them."""
    # Locked first: a worker's step write in flight commits before the file names are read,
    # and a later one finds no row (JobSuperseded) and deletes the file it wrote.
    _lock(jobs)
    names = list(FittingResultImage.objects.filter(job__in=jobs).values_list("image", flat=True))
    for job_id in jobs.values_list("id", flat=True):
        notify.job_changed_on_commit(job_id=job_id, event=JobEvent.DELETED)
    jobs.delete()
    files_delete_unreferenced(names)


@transaction.atomic
def fitting_delete(*, job: FittingResult) -> None:
    """Delete a job, even one still processing, with its images unless another job shares a file."""
    with log_context(job_id=str(job.id), attempt=job.attempt, user_id=job.owner_id):
        _jobs_delete(FittingResult.objects.filter(id=job.id))
        logger.info("job %s: deleted", job.id)


@transaction.atomic
def photo_delete(*, photo: UserImage) -> None:
    """Delete a photo and its file; refused (PHOTO_IN_USE) while a job using it is processing.

    Finished jobs that used it stay in their owner's history, without the photo.
    """
    if not _lock(UserImage.objects.filter(id=photo.id)):
        return  # already gone
    if FittingResult.objects.filter(user_image_id=photo.id, status=Status.PROCESSING).exists():
        raise PhotoInUseError()
    name = photo.image.name
    UserImage.objects.filter(id=photo.id).delete()
    files_delete_unreferenced([name])


@transaction.atomic
def user_delete(*, user: AbstractBaseUser) -> None:
    """Erase a user: jobs (running ones too), photos, their files, API token, sessions, account.

    A file another user's row still names (a shared cached result) stays for that user.
    Here in fitting, not in users, because it deletes the user's jobs first.
    """
    _jobs_delete(FittingResult.objects.filter(owner=user))
    photos = UserImage.objects.filter(owner=user)
    names = list(photos.values_list("image", flat=True))
    photos.delete()
    _sessions_delete(user)
    user.delete()  # the API token and the admin's log entries of this user go with it (CASCADE)
    files_delete_unreferenced(names)


def _sessions_delete(user: AbstractBaseUser) -> None:
    """Delete the user's stored sessions.

    Only database-backed session engines can be searched; with the others a session of a
    deleted user logs nobody in, since its user can no longer be loaded.
    """
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store_class, "get_model_class"):
        return
    user_id = str(user.pk)
    for session in store_class.get_model_class().objects.iterator():
        if session.get_decoded().get(SESSION_KEY) == user_id:
            store_class(session_key=session.session_key).delete()
