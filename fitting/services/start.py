"""Start a job: validate the request, create the job and its items, enqueue it."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_q.tasks import async_task

from core.errors import QuotaExceededError
from core.logcontext import log_context
from core.media import media_name
from fitting import costs
from fitting.engines import assign_identity
from fitting.errors import (
    CategoryConflictError,
    DuplicateCategoryError,
    IdempotencyKeyReusedError,
    InsufficientItemsError,
    InvalidCategoryError,
    InvalidItemIdError,
    PhotoRequiredError,
    TooManyItemsError,
)
from fitting.models import (
    DEFAULT_WEBHOOK_EVENTS,
    DRESS_REPLACES,
    STEP_ORDER,
    Category,
    FittingResult,
    FittingResultItem,
    Item,
    WebhookEvent,
)
from fitting.services.erasure import rows_lock
from fitting.services.reuse import complete_from_cache, result_cache_key, reuse_prefix
from fitting.webhooks import webhook_url_check
from users.models import UserImage
from users.selectors import photo_get_by_url, user_daily_job_quota

logger = logging.getLogger(__name__)


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


def fitting_validate(*, user: AbstractBaseUser, photo_url: str | None, items: list[RequestedItem]):
    """Check a request in the seed's order; return the photo and the items in step order."""
    photo = photo_get_by_url(owner=user, url=photo_url) if photo_url else None
    if photo is None:
        raise PhotoRequiredError(field="userPhotoUrl")
    if len(items) < 1:
        raise InsufficientItemsError(field="items")
    max_items = settings.FITTING_MAX_ITEMS
    if len(items) > max_items:
        message = ngettext("Pick at most %(count)d item.", "Pick at most %(count)d items.", max_items)
        raise TooManyItemsError(message % {"count": max_items}, field="items")
    seen: set[str] = set()
    for index, requested in enumerate(items):
        if requested.category in seen:
            raise DuplicateCategoryError(field=f"items[{index}].category")
        seen.add(requested.category)
    for index, requested in enumerate(items):
        if requested.category not in Category.values:
            raise InvalidCategoryError(field=f"items[{index}].category")
    if Category.DRESS in seen:
        for index, requested in enumerate(items):
            if requested.category in DRESS_REPLACES:
                raise CategoryConflictError(field=f"items[{index}].category")
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


def _request_fingerprint(
    *,
    photo_url: str | None,
    items: list[RequestedItem],
    webhook: WebhookRequest | None,
    num_samples: int = 1,
    seed: int | None = None,
) -> str:
    fields = {"userPhotoUrl": photo_url, "items": [[i.item_id, i.category, i.image_url] for i in items]}
    if webhook is not None:  # only then: keys stored before webhooks existed keep their fingerprint
        fields["webhook"] = [webhook.url, sorted(webhook.events)]
    if num_samples != 1:  # likewise for numSamples and the seed
        fields["numSamples"] = num_samples
    if seed is not None:
        fields["seed"] = seed
    canonical = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def fitting_start(
    *,
    user: AbstractBaseUser,
    photo_url: str | None,
    items: list[RequestedItem],
    idempotency_key: str | None = None,
    webhook: WebhookRequest | None = None,
    num_samples: int = 1,
    seed: int | None = None,
) -> tuple[FittingResult, bool]:
    """Validate, create the job and its items, and enqueue it once the transaction commits.

    Returns ``(job, replayed)``: with an ``idempotency_key`` already used by this user in
    the last 24 hours for the same request, the earlier job and True. A repeat of an
    earlier completed result (same photo and garment content, engine, model and prompt
    version) completes at once from the stored images, without the engine. With a
    ``webhook``, its URL is checked (INVALID_WEBHOOK_URL) after the photo and the items.
    ``num_samples`` (1 to FITTING_MAX_SAMPLES, checked by the caller) candidates per step and
    the ``seed`` are stored on the job, and are part of its result-cache and step-reuse keys.
    """
    fingerprint = (
        _request_fingerprint(photo_url=photo_url, items=items, webhook=webhook, num_samples=num_samples, seed=seed)
        if idempotency_key
        else ""
    )
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
                num_samples=num_samples,
                seed=seed,
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


def _create_job(*, user, photo_url, items, idempotency_key, fingerprint, webhook, num_samples, seed) -> FittingResult:
    photo, ordered = fitting_validate(user=user, photo_url=photo_url, items=items)
    if webhook is not None:
        webhook_url_check(webhook.url)  # resolves the host: before any row is locked or written
    if not rows_lock(UserImage.objects.filter(id=photo.id)):  # deleted meanwhile (photo_delete holds the lock)
        raise PhotoRequiredError(field="userPhotoUrl")
    job_id = uuid.uuid4()
    identity = assign_identity(job_id)  # with its prompt version (FITTING_PROMPT_EXPERIMENT)
    now = timezone.now()
    job = FittingResult.objects.create(
        id=job_id,
        owner=user,
        user_image=photo,
        engine=identity.name,
        model=identity.model,
        prompt_version=identity.prompt_version,
        cache_key=result_cache_key(
            photo=photo,
            items=ordered,
            engine=identity.name,
            model=identity.model,
            prompt_version=identity.prompt_version,
            num_samples=num_samples,
            seed=seed,
        ),
        num_samples=num_samples,
        seed=seed,
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
        if complete_from_cache(job):
            costs.usage_add(user_id=job.owner_id, cached_jobs=1)
            logger.info("job %s: completed from the result cache", job.id)
            return job  # free: no engine call, so not counted against the quota
        _check_daily_quota(job)
        costs.usage_add(user_id=job.owner_id, jobs_started=1)  # still under the owner's lock
        reuse_prefix(job, photo=photo, items=ordered)
        fitting_enqueue_on_commit(job=job)
        logger.info("job %s: accepted", job.id)
    return job


def _check_daily_quota(job: FittingResult) -> None:
    """Refuse ``job`` (QUOTA_EXCEEDED) when its owner already started their day's quota of jobs.

    Counted: the jobs the owner started since the start of the day (in TIME_ZONE) that were
    not whole-result cache hits, i.e. that call the engine (a job whose every step is reused
    still asks for its message), as the usage ledger (``UsageDay``) has them: deleting jobs
    does not give the slots back. The owner's row is the lock: two starts at once count one
    after the other (the caller adds this job to the ledger before the lock is released).
    Raised inside the start's transaction, so the refused job is rolled back.
    """
    quota = user_daily_job_quota(user=job.owner)
    if not quota:
        return
    # NO KEY UPDATE: serialises the owner's quota checks, yet does not wait on the KEY SHARE
    # lock that inserting a job (its foreign key) takes, so two starts cannot deadlock.
    get_user_model().objects.select_for_update(no_key=True).filter(pk=job.owner_id).exists()
    now = timezone.localtime()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    used = costs.usage_jobs_started(user_id=job.owner_id)
    if used < quota:
        return
    logger.info("user %s: daily quota of %s jobs reached", job.owner_id, quota)
    resets_at = day_start + timedelta(days=1)
    raise QuotaExceededError(
        _("You have started %(count)d fittings today, your daily limit. It resets at %(time)s.")
        % {"count": quota, "time": resets_at.isoformat()},
        headers={"Retry-After": str(max(1, math.ceil((resets_at - now).total_seconds())))},
    )


def fitting_enqueue_on_commit(*, job: FittingResult) -> None:
    job_id, attempt = str(job.id), job.attempt
    transaction.on_commit(lambda: fitting_enqueue(job_id=job_id, attempt=attempt))


def fitting_enqueue(*, job_id: str, attempt: int) -> None:
    # By dotted path, so the web process never imports the pipeline or an engine.
    async_task(RUN_TASK, job_id, attempt, task_name=f"fitting-{job_id}-{attempt}")
