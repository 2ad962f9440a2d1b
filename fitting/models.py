from __future__ import annotations

import uuid
from enum import StrEnum

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from fitting.engines.identity import EngineIdentity
from fitting.errors import FailureCode


class Category(models.TextChoices):
    TOP = "top", _("top")
    BOTTOM = "bottom", _("bottom")
    OUTER = "outer", _("outerwear")
    DRESS = "dress", _("dress")  # one-piece: replaces top and bottom (CATEGORY_CONFLICT with either)
    SHOES = "shoes", _("shoes")


# The fixed step order: a dress is where a top would be (it never comes with one), the outer
# goes over the top or the dress, and the shoes come last.
STEP_ORDER = [Category.TOP, Category.DRESS, Category.BOTTOM, Category.OUTER, Category.SHOES]
# A dress is a top and a bottom in one: a request with both is refused (CATEGORY_CONFLICT).
DRESS_REPLACES = (Category.TOP, Category.BOTTOM)


class Status(models.TextChoices):
    PROCESSING = "processing", _("processing")
    COMPLETED = "completed", _("completed")
    FAILED = "failed", _("failed")
    TIMEOUT = "timeout", _("timed out")
    CANCELED = "canceled", _("canceled")

    @classmethod
    def terminal(cls) -> tuple[Status, ...]:
        """The statuses a job ends in: nothing changes it after, but a reprocess."""
        return (cls.COMPLETED, cls.FAILED, cls.TIMEOUT, cls.CANCELED)

    @classmethod
    def reprocessable(cls, *, named: bool = False) -> tuple[Status, ...]:
        """The statuses a reprocess takes a job from.

        A canceled job was stopped on purpose: it runs again only when someone ``named`` it
        (the command's JOB_IDs, the admin's selection), never in a sweep over statuses.
        """
        return (cls.FAILED, cls.TIMEOUT, cls.CANCELED) if named else (cls.FAILED, cls.TIMEOUT)

    @classmethod
    def cancelable(cls) -> tuple[Status, ...]:
        """The statuses a cancel accepts: a processing job, and a canceled one (nothing changes)."""
        return (cls.PROCESSING, cls.CANCELED)


class ImageStep(models.TextChoices):
    TOP = "top", _("top")
    BOTTOM = "bottom", _("bottom")
    OUTER = "outer", _("outerwear")
    DRESS = "dress", _("dress")
    SHOES = "shoes", _("shoes")
    FINAL = "final", _("final")


class JobEvent(StrEnum):
    """What happens to a job, announced after it commits (``fitting.notify.job_changed``).

    The webhook ones (``WebhookEvent``) are the job's public event names.
    """

    STEP_STARTED = "fitting.step_started"
    STEP_FINISHED = "fitting.step_finished"
    COMPLETED = "fitting.completed"
    FAILED = "fitting.failed"
    TIMEOUT = "fitting.timeout"
    CANCELED = "fitting.canceled"
    REQUEUED = "fitting.requeued"  # reprocessed: processing again, as a new attempt
    DELETED = "fitting.deleted"
    RATED = "fitting.rated"  # its owner rated it, changed the rating or removed it


class WebhookEvent(models.TextChoices):
    """The events a job's webhook can subscribe to (``webhookEvents``)."""

    STEP_FINISHED = JobEvent.STEP_FINISHED.value, JobEvent.STEP_FINISHED.value
    COMPLETED = JobEvent.COMPLETED.value, JobEvent.COMPLETED.value
    FAILED = JobEvent.FAILED.value, JobEvent.FAILED.value
    TIMEOUT = JobEvent.TIMEOUT.value, JobEvent.TIMEOUT.value
    CANCELED = JobEvent.CANCELED.value, JobEvent.CANCELED.value
    RATED = JobEvent.RATED.value, JobEvent.RATED.value


# Without webhookEvents: the events that end a job.
DEFAULT_WEBHOOK_EVENTS = [WebhookEvent.COMPLETED, WebhookEvent.FAILED, WebhookEvent.TIMEOUT, WebhookEvent.CANCELED]


# Where the app's files live in the media storage (core.media registers them).
ITEMS_DIR = "items"
RESULTS_DIR = "results"
ATTEMPTS_DIR = "attempts"  # images of a step's attempts the quality gate did not keep


def item_upload_to(instance: Item, filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower()
    return f"{ITEMS_DIR}/{uuid.uuid4().hex}.{extension}"


def result_upload_to(instance: FittingResultImage, filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower()
    return f"{RESULTS_DIR}/{uuid.uuid4().hex}.{extension}"


class Item(models.Model):
    """A garment of the catalogue."""

    name = models.CharField(_("name"), max_length=200)
    category = models.CharField(_("category"), max_length=10, choices=Category.choices)
    image = models.ImageField(_("image"), upload_to=item_upload_to)
    content_hash = models.CharField(_("content hash"), max_length=64, blank=True, editable=False)
    is_active = models.BooleanField(_("active"), default=True)
    # The id of the item in the catalogue feed it was imported from (import_items); "" for
    # items made by hand. Unique when set: a feed updates its items by it.
    external_id = models.CharField(
        _("external id"),
        max_length=200,
        blank=True,
        default="",
        help_text=_("The item's id in the catalogue feed (import_items); empty for items made here."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("catalogue item")
        verbose_name_plural = _("catalogue items")
        ordering = ["category", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(category__in=Category.values), name="item_category_valid"),
            models.UniqueConstraint(
                fields=["external_id"],
                condition=~Q(external_id=""),
                name="item_external_id_unique",
                violation_error_message=_("Another item has this external id."),
            ),
        ]
        indexes = [models.Index(fields=["is_active", "category"], name="item_active_category")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_category_display()})"


class FittingResult(models.Model):
    """One fitting job. Its id is the API's jobId."""

    id = models.UUIDField(_("job id"), primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="fittings", verbose_name=_("owner")
    )
    # NULL once the user deleted the photo: the job stays in their history, without it.
    user_image = models.ForeignKey(
        "users.UserImage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="fittings",
        verbose_name=_("person photo"),
    )
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.PROCESSING)
    # NULL, not "": the API shows "no step" as null, and the check constraints say so.
    current_step = models.CharField(_("current step"), max_length=10, choices=Category.choices, null=True, blank=True)  # noqa: DJ001
    failed_step = models.CharField(_("failed step"), max_length=10, choices=Category.choices, null=True, blank=True)  # noqa: DJ001
    error_code = models.CharField(_("error code"), max_length=40, blank=True, choices=FailureCode.choices)
    error_message = models.TextField(_("error message"), blank=True)
    llm_message = models.TextField(_("styling message"), null=True, blank=True)  # noqa: DJ001 - null: no message (it failed)
    engine = models.CharField(_("engine"), max_length=20)
    model = models.CharField(_("model"), max_length=100)
    prompt_version = models.CharField(_("prompt version"), max_length=20)
    attempt = models.PositiveIntegerField(_("attempt"), default=1)
    # Per step: {"top": {"latency_ms": 812, "prompt_tokens": …, "candidates_tokens": …, "total_tokens": …}}
    step_metrics = models.JSONField(_("step metrics"), default=dict, blank=True)
    # Tokens the engine's steps used, all attempts together (fitting.costs prices them).
    input_tokens = models.PositiveBigIntegerField(_("input tokens"), default=0)
    output_tokens = models.PositiveBigIntegerField(_("output tokens"), default=0)
    # The quality judge's tokens (FITTING_QUALITY_JUDGE=gemini): the text model's, priced at its rate.
    judge_input_tokens = models.PositiveBigIntegerField(_("judge input tokens"), default=0)
    judge_output_tokens = models.PositiveBigIntegerField(_("judge output tokens"), default=0)
    # QUALITY_CHECK_FAILED gave the day's quota slot back (once per job, however often it is reprocessed).
    quota_given_back = models.BooleanField(_("quota slot given back"), default=False)
    cache_key = models.CharField(_("cache key"), max_length=64, db_index=True)
    cached = models.BooleanField(_("from cache"), default=False)
    # NULL for "no key", so the unique constraint only covers jobs that have one.
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, null=True, blank=True)  # noqa: DJ001
    request_hash = models.CharField(_("request hash"), max_length=64, blank=True)
    # Where to POST the job's events ("" for none), which ones, and the scheme://host the job
    # was requested through: the base of the absolute image URLs in the payloads, as GET shows them.
    webhook_url = models.CharField(_("webhook URL"), max_length=2000, blank=True)
    webhook_events = models.JSONField(_("webhook events"), default=list, blank=True)
    request_origin = models.CharField(_("request origin"), max_length=300, blank=True)
    # Candidates each step asks for (numSamples, issue 23): the best goes on, the last step's all kept.
    num_samples = models.PositiveSmallIntegerField(_("candidates per step"), default=1)
    # The request's seed (0 to 2**31-1), NULL when none was given: candidate k uses seed + k.
    seed = models.BigIntegerField(_("seed"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    enqueued_at = models.DateTimeField(_("enqueued at"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    deadline_at = models.DateTimeField(_("deadline"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("fitting job")
        verbose_name_plural = _("fitting jobs")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=Status.values), name="job_status_valid"),
            models.CheckConstraint(
                condition=Q(current_step__isnull=True) | Q(current_step__in=Category.values),
                name="job_current_step_valid",
            ),
            models.CheckConstraint(
                condition=Q(failed_step__isnull=True) | Q(failed_step__in=Category.values),
                name="job_failed_step_valid",
            ),
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_owner_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["status", "deadline_at"], name="job_status_deadline"),
            models.Index(fields=["-created_at"], name="job_created"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def engine_identity(self) -> EngineIdentity:
        """The engine, model and prompt version the job is pinned to (made its images, or will)."""
        return EngineIdentity(self.engine, self.model, self.prompt_version)

    @property
    def is_terminal(self) -> bool:
        return self.status in Status.terminal()

    def step_items(self) -> list[FittingResultItem]:
        """The job's garments in step order (``STEP_ORDER``), one step each; prefetch ``items``."""
        return sorted(self.items.all(), key=lambda job_item: STEP_ORDER.index(job_item.category))

    def first_unfinished_step(self) -> str | None:
        """The first step (in step order) without a stored image: where a resumed attempt starts."""
        finished = {image.step for image in self.images.all()}
        return next((item.category for item in self.step_items() if item.category not in finished), None)


class FittingResultItem(models.Model):
    """A garment of a job, with its category and its place in the step order."""

    job = models.ForeignKey(FittingResult, on_delete=models.CASCADE, related_name="items", verbose_name=_("job"))
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+", verbose_name=_("catalogue item"))
    category = models.CharField(_("category"), max_length=10, choices=Category.choices)
    order = models.PositiveSmallIntegerField(_("order"))

    class Meta:
        verbose_name = _("job garment")
        verbose_name_plural = _("job garments")
        ordering = ["order"]
        constraints = [
            models.CheckConstraint(condition=Q(category__in=Category.values), name="jobitem_category_valid"),
            models.UniqueConstraint(fields=["job", "category"], name="jobitem_one_per_category"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} {self.order}. {self.category}"


class FittingResultImage(models.Model):
    """An image a job produced: one per finished step, and the final one."""

    job = models.ForeignKey(FittingResult, on_delete=models.CASCADE, related_name="images", verbose_name=_("job"))
    step = models.CharField(_("step"), max_length=10, choices=ImageStep.choices)
    image = models.ImageField(_("image"), upload_to=result_upload_to)
    width = models.PositiveIntegerField(_("width"))
    height = models.PositiveIntegerField(_("height"))
    # A step image is what its job's first steps made of the photo: the same photo content,
    # garments up to this step and engine identity make the same key, and another job
    # starts from this image instead of calling the engine again ("" for the final image).
    prefix_key = models.CharField(_("prefix key"), max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("result image")
        verbose_name_plural = _("result images")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(step__in=ImageStep.values), name="jobimage_step_valid"),
            # A re-delivered task or a resumed attempt can never store a step twice.
            models.UniqueConstraint(fields=["job", "step"], name="jobimage_one_per_step"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id} {self.step}"


# --- ratings from users ---------------------------------------------------------------------
class RatingReason(models.TextChoices):
    """What a user found wrong with a result (a fixed list, so the reasons can be counted)."""

    FACE_CHANGED = "face_changed", _("the face changed")
    GARMENT_WRONG = "garment_wrong", _("the garment is wrong")
    FIT = "fit", _("the fit")
    COLOUR = "colour", _("the colour")
    BACKGROUND = "background", _("the background")
    ARTIFACTS = "artifacts", _("artifacts")
    OTHER = "other", _("other")


RATING_SCORES = range(1, 6)
RATING_COMMENT_MAX = 500


class FittingRating(models.Model):
    """Its owner's rating of a completed job: one per job (a new one replaces it), gone with the job."""

    job = models.OneToOneField(FittingResult, on_delete=models.CASCADE, related_name="rating", verbose_name=_("job"))
    score = models.PositiveSmallIntegerField(_("score"), choices=[(s, str(s)) for s in RATING_SCORES])
    reasons = models.JSONField(_("reasons"), default=list, blank=True)  # RatingReason values, in its order
    comment = models.TextField(_("comment"), max_length=RATING_COMMENT_MAX, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("user rating")
        verbose_name_plural = _("user ratings")
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1) & Q(score__lte=5), name="rating_score_valid"),
        ]
        indexes = [models.Index(fields=["score"], name="rating_score")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.score}"

    def reason_labels(self) -> list[str]:
        labels = dict(RatingReason.choices)
        return [str(labels.get(reason, reason)) for reason in self.reasons]


def attempt_upload_to(instance: StepAttempt, filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower()
    return f"{ATTEMPTS_DIR}/{uuid.uuid4().hex}.{extension}"


class AttemptResult(models.TextChoices):
    """What the quality gate made of one attempt of a step."""

    ACCEPTED = "accepted", _("accepted")  # passed: the step's image
    REJECTED = "rejected", _("rejected")  # failed a check: asked again, or none passed
    BEST = "best", _("kept as the best")  # none passed; FITTING_QUALITY_POLICY=accept_best kept it
    UNCHECKED = "unchecked", _("not checked")  # FITTING_QUALITY_GATE=off
    OUTRANKED = "outranked", _("outranked by another candidate")  # numSamples > 1: not the best of its call


class StepAttempt(models.Model):
    """One image an engine answered for a step (a candidate: ``sample``; the try-on model answers
    numSamples of them in one call), with the quality checks' scores (issue 22).

    Every attempt is kept: the one the step kept names the step image's file (no copy), a
    rejected one its own file under ``attempts/``; all go with the job.
    """

    job = models.ForeignKey(
        FittingResult, on_delete=models.CASCADE, related_name="step_attempts", verbose_name=_("job")
    )
    category = models.CharField(_("step"), max_length=10, choices=Category.choices)
    number = models.PositiveSmallIntegerField(_("attempt"))  # 1, 2, … within the step
    # Which of the attempt's numSamples candidates (0, 1, …): all share ``number``.
    sample = models.PositiveSmallIntegerField(_("candidate"), default=0)
    # A copy of an earlier job's row (a reused last step or a cache hit): no engine call of this job.
    shared = models.BooleanField(_("from an earlier job"), default=False)
    # The job's candidates (the last step's kept call, issue 23): 0 is the result, 1… the others
    # best first; NULL for every other attempt.
    candidate_rank = models.PositiveSmallIntegerField(_("candidate rank"), null=True, blank=True)
    seed = models.BigIntegerField(_("seed"), null=True, blank=True)
    # fitting.quality.Assessment.as_json(), plus "judge" when the judge ran; {} when not checked.
    scores = models.JSONField(_("scores"), default=dict, blank=True)
    passed = models.BooleanField(_("passed"), null=True)  # None: not checked
    outcome = models.CharField(_("outcome"), max_length=10, choices=AttemptResult.choices)
    image = models.ImageField(_("image"), upload_to=attempt_upload_to, blank=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"), default=0)
    usage = models.JSONField(_("engine usage"), default=dict, blank=True)  # tokens; the judge's as judge_*
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("step attempt")
        verbose_name_plural = _("step attempts")
        ordering = ["id"]
        indexes = [models.Index(fields=["created_at"], name="stepattempt_created")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.category} #{self.number}"

    @property
    def failed_checks(self) -> list[str]:
        return list((self.scores or {}).get("failed") or [])


# --- webhooks -------------------------------------------------------------------------------
class WebhookSecret(models.Model):
    """A user's webhook signing secret (``whsec_`` + base64), made on first use."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_secret", verbose_name=_("user")
    )
    secret = models.CharField(_("secret"), max_length=100)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    rotated_at = models.DateTimeField(_("rotated at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook secret")
        verbose_name_plural = _("webhook secrets")

    def __str__(self) -> str:
        return f"{self.user_id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("pending")
    DELIVERED = "delivered", _("delivered")
    FAILED = "failed", _("failed")


class WebhookDelivery(models.Model):
    """One event of a job to its webhook: the payload frozen when the event happened.

    Every attempt sends the same body with the same ``webhook_id``. ``next_attempt_at`` is
    when the sweep may enqueue it (again); ``locked_until`` holds off a second attempt while
    one runs; ``retry_until`` ends the retries.
    """

    job = models.ForeignKey(
        FittingResult, on_delete=models.CASCADE, related_name="webhook_deliveries", verbose_name=_("job")
    )
    event = models.CharField(_("event"), max_length=40, choices=WebhookEvent.choices)
    webhook_id = models.CharField(_("webhook id"), max_length=64, unique=True)
    url = models.CharField(_("URL"), max_length=2000)
    payload = models.TextField(_("payload"))
    status = models.CharField(
        _("status"), max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempt_count = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    retry_until = models.DateTimeField(_("retry until"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_status_due")]

    def __str__(self) -> str:
        return self.webhook_id


class AttemptOutcome(models.TextChoices):
    DELIVERED = "delivered", _("delivered")  # a 2xx answer
    RETRY = "retry", _("retry")  # network error, timeout, 408, 429 or 5xx: tried again later
    FAILED = "failed", _("failed")  # any other answer (4xx, 3xx): final
    REFUSED = "refused", _("refused")  # the URL now resolves to an address we may not call: final
    EXPIRED = "expired", _("expired")  # would be retried, but past retry_until: final


class WebhookAttempt(models.Model):
    """One POST of a delivery: when, how long, what came back."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempts", verbose_name=_("webhook delivery")
    )
    number = models.PositiveIntegerField(_("number"))
    started_at = models.DateTimeField(_("started"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    status_code = models.PositiveSmallIntegerField(_("answer"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    outcome = models.CharField(_("outcome"), max_length=10, choices=AttemptOutcome.choices)

    class Meta:
        ordering = ["started_at", "id"]
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"


class MetricCounter(models.Model):
    """One series of a Prometheus counter, kept in the database (GET /metrics reads them).

    Services add to these in the same transaction as the change they count, so a job
    finished on any node counts exactly once, and a restart loses nothing.
    """

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=300)  # the labels as canonical JSON: {"engine": "gemini", …}
    value = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "labels"], name="metric_counter_unique")]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} {self.value}"


class StreamCount(models.Model):
    """The event streams one web process holds open, as its watcher last reported them.

    GET /metrics sums the fresh rows: any web process answers for all of them, and a process
    that died drops out once its row is stale (``fitting.metrics.STREAMS_FRESH``).
    """

    process = models.CharField(_("process"), max_length=200, unique=True)  # host:pid
    open_streams = models.PositiveIntegerField(_("open event streams"), default=0)
    updated_at = models.DateTimeField(_("updated at"))

    class Meta:
        verbose_name = _("event stream count")
        verbose_name_plural = _("event stream counts")

    def __str__(self) -> str:
        return f"{self.process}: {self.open_streams}"


class UsageDay(models.Model):
    """What one user used on one day (TIME_ZONE): the ledger the daily quota and the cost pages read.

    Written in the same transaction as what it counts, and never by deleting: deleting a job
    leaves it as it is (the quota cannot be reset that way, and the costs stay true), and
    erasing the account only takes the user off it (``user`` becomes NULL: anonymised).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    day = models.DateField(_("day"))
    # Accepted jobs that were not whole-result cache hits: what the daily quota counts.
    jobs_started = models.PositiveIntegerField(_("jobs started"), default=0)
    cached_jobs = models.PositiveIntegerField(_("jobs from the result cache"), default=0)
    # Slots QUALITY_CHECK_FAILED jobs gave back (at most the day's quota: fitting.costs.usage_give_back_job).
    jobs_given_back = models.PositiveIntegerField(_("quota slots given back"), default=0)
    # Job attempts that made at least one engine call (counted at their first one).
    engine_jobs = models.PositiveIntegerField(_("jobs calling the engine"), default=0)
    # Calls of the image model (one per step the engine made; reused steps make none).
    engine_calls = models.PositiveIntegerField(_("engine calls"), default=0)
    input_tokens = models.PositiveBigIntegerField(_("input tokens"), default=0)
    output_tokens = models.PositiveBigIntegerField(_("output tokens"), default=0)
    # USD at the price of the time (FITTING_PRICES); NULL once tokens of a model without a price were used.
    cost = models.DecimalField(_("estimated cost (USD)"), max_digits=20, decimal_places=10, null=True, default=0)

    class Meta:
        verbose_name = _("usage of a day")
        verbose_name_plural = _("usage per day")
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="usage_user_day_unique")]
        indexes = [models.Index(fields=["day"], name="usage_day")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}"
