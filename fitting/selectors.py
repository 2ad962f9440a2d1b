from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Avg, CharField, Count, F, FloatField, Prefetch, Q, QuerySet, Sum, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Concat, Replace, TruncDate, TruncHour
from django.utils import timezone

from fitting.models import FittingRating, FittingResult, Item, RatingReason, Status, StepAttempt


def item_list(*, category: str | None = None) -> QuerySet[Item]:
    items = Item.objects.filter(is_active=True)
    if category:
        items = items.filter(category=category)
    return items.order_by("category", "id")


def job_prefetches() -> tuple:
    """What the API shows of a job besides its row: its items, images and candidates (``candidate_rows``)."""
    candidates = StepAttempt.objects.filter(candidate_rank__isnull=False).order_by("candidate_rank")
    return ("items", "images", Prefetch("step_attempts", queryset=candidates, to_attr="candidate_rows"))


def fitting_list(*, user: AbstractBaseUser) -> QuerySet[FittingResult]:
    """The user's jobs, newest first, with what the API shows prefetched (fixed query count)."""
    return (
        FittingResult.objects.filter(owner=user)
        .select_related("rating")
        .prefetch_related(*job_prefetches())
        .order_by("-created_at", "-id")
    )


def fitting_get(*, user: AbstractBaseUser, job_id) -> FittingResult | None:
    return fitting_list(user=user).filter(id=job_id).first()


def fitting_is_current(*, job: FittingResult) -> bool:
    """Whether ``job`` is still processing as this attempt (not canceled, reprocessed or deleted).

    The pipeline asks before an engine call that no write of its own precedes (the message,
    an engine's retry): a job canceled meanwhile gets no further call.
    """
    return FittingResult.objects.filter(id=job.id, attempt=job.attempt, status=Status.PROCESSING).exists()


def fitting_with_details(*, job_id) -> FittingResult | None:
    """Any user's job with what the API shows prefetched (the event streams' one read of a change)."""
    return FittingResult.objects.filter(id=job_id).select_related("rating").prefetch_related(*job_prefetches()).first()


def fitting_stamps(*, job_ids: Iterable) -> dict[str, datetime]:
    """``updated_at`` of each of ``job_ids`` that exists, by job id (str): one query for all."""
    rows = FittingResult.objects.filter(id__in=list(job_ids)).values_list("id", "updated_at")
    return {str(job_id): updated_at for job_id, updated_at in rows}


def fitting_failed_list(
    *,
    statuses: Iterable[str] = Status.reprocessable(),
    created_since: datetime | None = None,
    job_ids: Iterable[uuid.UUID] | None = None,
) -> QuerySet[FittingResult]:
    """Failed or timed-out jobs, oldest failure first, with what a reprocess report needs.

    Ordered by when each job last ended: a job that fails again moves to the back, so
    repeated ``--limit`` batches work through the whole backlog.
    """
    jobs = FittingResult.objects.filter(status__in=list(statuses))
    if created_since is not None:
        jobs = jobs.filter(created_at__gte=created_since)
    if job_ids is not None:
        jobs = jobs.filter(id__in=list(job_ids))
    return (
        jobs.select_related("owner")
        .prefetch_related("items", "images")
        .order_by(F("finished_at").asc(nulls_first=True), "created_at", "id")
    )


def fitting_with_id_prefix(jobs: QuerySet[FittingResult], digits: str) -> QuerySet[FittingResult]:
    """The jobs of ``jobs`` whose id starts with ``digits`` (lowercase hex, no hyphens)."""
    if len(digits) == 32:
        return jobs.filter(id=uuid.UUID(digits))  # the primary key index
    # PostgreSQL's text form of a uuid has hyphens, SQLite stores 32 hex digits: compare
    # both without hyphens.
    id_hex = Replace(Cast("id", output_field=CharField()), Value("-"), Value(""))
    return jobs.filter(
        id__in=FittingResult.objects.annotate(id_hex=id_hex).filter(id_hex__startswith=digits).values("id")
    )


# --- the staff dashboard ----------------------------------------------------------------------
LATENCY_WINDOW = timedelta(days=7)  # step latencies: jobs finished in the last 7 days …
LATENCY_MAX_JOBS = 5000  # … at most this many, newest first (percentiles computed in Python)
LATENCY_KEYS = ("top", "bottom", "outer", "message")


@dataclass(frozen=True)
class Dashboard:
    """What the staff dashboard shows; every query bounded in time."""

    now: datetime
    hours: list[datetime]  # the last 24 hour buckets, oldest first
    per_hour: dict[str, list[int]]  # status -> jobs created in each hour bucket
    days: list[date]  # the last 30 days, oldest first
    per_day: dict[str, list[int]]  # status -> jobs created on each day
    failures: list[tuple[str | None, str, int]]  # (failed step, error code, jobs), last 30 days, most first
    latency: dict[str, tuple[int, int, int]]  # step or "message" -> (p50 ms, p95 ms, samples)
    latency_jobs: int  # how many jobs the latencies come from
    completed: int  # completed jobs in the last 30 days …
    cached: int  # … of which served from the result cache
    message_failures: int  # … of which ran but got no message


def _percentile(values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of ``values`` (sorted here)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def fitting_dashboard(*, now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    tz = timezone.get_current_timezone()
    this_hour = timezone.localtime(now, tz).replace(minute=0, second=0, microsecond=0)
    hours = [this_hour - timedelta(hours=n) for n in range(23, -1, -1)]
    today = timezone.localtime(now, tz).date()
    days = [today - timedelta(days=n) for n in range(29, -1, -1)]
    statuses = list(Status.values)

    per_hour = {status: [0] * len(hours) for status in statuses}
    hour_index = {hour: i for i, hour in enumerate(hours)}
    rows = (
        FittingResult.objects.filter(created_at__gte=hours[0])
        .annotate(bucket=TruncHour("created_at", tzinfo=tz))
        .values("bucket", "status")
        .annotate(jobs=Count("id"))
    )
    for row in rows:
        i = hour_index.get(timezone.localtime(row["bucket"], tz))
        if i is not None and row["status"] in per_hour:
            per_hour[row["status"]][i] += row["jobs"]

    month_start = datetime.combine(days[0], time.min, tzinfo=tz)
    per_day = {status: [0] * len(days) for status in statuses}
    day_index = {day: i for i, day in enumerate(days)}
    rows = (
        FittingResult.objects.filter(created_at__gte=month_start)
        .annotate(bucket=TruncDate("created_at", tzinfo=tz))
        .values("bucket", "status")
        .annotate(jobs=Count("id"))
    )
    for row in rows:
        i = day_index.get(row["bucket"])
        if i is not None and row["status"] in per_day:
            per_day[row["status"]][i] += row["jobs"]

    month = FittingResult.objects.filter(created_at__gte=month_start)
    failures = [
        (row["failed_step"], row["error_code"], row["jobs"])
        for row in month.exclude(error_code="")
        .values("failed_step", "error_code")
        .annotate(jobs=Count("id"))
        .order_by("-jobs", "error_code", "failed_step")
    ]
    completed = month.filter(status=Status.COMPLETED)
    counts = completed.aggregate(
        n_completed=Count("id"),
        n_cached=Count("id", filter=Q(cached=True)),
        n_message_failures=Count("id", filter=Q(cached=False, llm_message__isnull=True)),
    )

    samples: dict[str, list[int]] = {key: [] for key in LATENCY_KEYS}
    recent = (
        FittingResult.objects.filter(finished_at__gte=now - LATENCY_WINDOW, cached=False)
        .order_by("-finished_at")
        .values_list("step_metrics", flat=True)[:LATENCY_MAX_JOBS]
    )
    latency_jobs = 0
    for metrics in recent:
        latency_jobs += 1
        for key, values in (metrics or {}).items():
            if key in samples and isinstance(values, dict) and isinstance(values.get("latency_ms"), int):
                samples[key].append(values["latency_ms"])
    latency = {
        key: (_percentile(values, 0.5), _percentile(values, 0.95), len(values))
        for key, values in samples.items()
        if values
    }
    return Dashboard(
        now=now,
        hours=hours,
        per_hour=per_hour,
        days=days,
        per_day=per_day,
        failures=failures,
        latency=latency,
        latency_jobs=latency_jobs,
        completed=counts["n_completed"],
        cached=counts["n_cached"],
        message_failures=counts["n_message_failures"],
    )


# --- the quality gate's figures (issue 22) --------------------------------------------------
QUALITY_WINDOW = timedelta(days=7)
QUALITY_MAX_ATTEMPTS = 20_000  # the newest attempts read for the dashboard: a bounded page


@dataclass(frozen=True)
class QualityRow:
    """One engine, model and prompt version: the checks' pass rates and the attempts per step."""

    engine: str
    model: str
    prompt_version: str
    attempts: int  # rounds of engine calls (a round asks for the job's numSamples candidates)
    steps: int
    pass_rates: dict[str, float | None]  # check -> share passed of those judged (None: never judged)

    @property
    def mean_attempts(self) -> float:
        return self.attempts / self.steps if self.steps else 0.0


def quality_by_identity() -> tuple[list[str], list[QualityRow]]:
    """Per engine identity, over the last QUALITY_WINDOW: pass rate per check (per candidate
    checked), mean attempts (rounds of calls, as the API's ``attempts``) per step.

    Rows copied from an earlier job (``shared``: a cache hit, a reused step) made no call and
    are left out. Also the checks' names, in the order the assessments list them (read from
    the scores, so the web process never imports the checks and OpenCV).
    """
    rows = (
        StepAttempt.objects.filter(created_at__gte=timezone.now() - QUALITY_WINDOW, shared=False)
        .order_by("-id")
        .values_list("job_id", "category", "number", "scores", "job__engine", "job__model", "job__prompt_version")[
            :QUALITY_MAX_ATTEMPTS
        ]
    )
    rounds: dict[tuple[str, str, str], set] = defaultdict(set)
    steps: dict[tuple[str, str, str], set] = defaultdict(set)
    judged: dict[tuple[str, str, str], dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    checks: dict[str, None] = {}
    for job_id, category, number, scores, engine, model, prompt_version in rows:
        key = (engine, model, prompt_version)
        rounds[key].add((job_id, category, number))
        steps[key].add((job_id, category))
        for name, check in ((scores or {}).get("checks") or {}).items():
            checks.setdefault(name)
            if check.get("outcome") in ("passed", "failed"):
                counts = judged[key][name]
                counts[0] += check["outcome"] == "passed"
                counts[1] += 1
    return list(checks), [
        QualityRow(
            *key,
            attempts=len(rounds[key]),
            steps=len(steps[key]),
            pass_rates={
                name: (judged[key][name][0] / judged[key][name][1]) if judged[key][name][1] else None for name in checks
            },
        )
        for key in sorted(rounds)
    ]


# --- the prompt comparison (issue 24) -----------------------------------------------------------
PROMPT_COMPARISON_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class PromptComparisonRow:
    """One engine, model and prompt version over the window: counts only (the page makes the rates).

    Jobs are those started in the window and not served from the result cache (a cache hit
    says nothing of its prompt); attempts and ratings are those of these jobs.
    """

    engine: str
    model: str
    prompt_version: str
    jobs: int
    completed: int
    input_tokens: int  # of all the jobs, failed ones too: what the completed ones cost
    output_tokens: int
    judge_input_tokens: int  # the quality judge's (the text model's)
    judge_output_tokens: int
    attempts: int  # rounds of engine calls of the steps (the API's attempts; a round makes numSamples candidates)
    steps: int  # steps run
    checked: int  # candidates the quality checks judged
    passed: int
    judged: int  # attempts with a judge's score
    judge_mean: float | None
    ratings: int
    rating_mean: float | None
    reasons: dict[str, int]  # rating reason -> ratings that gave it

    @property
    def mean_attempts(self) -> float | None:
        return self.attempts / self.steps if self.steps else None


def _text(*fields: str) -> Concat:
    """The fields as one text ("a:b:c"), to count distinct combinations on SQLite and PostgreSQL."""
    parts = []
    for name in fields:
        parts += [Cast(name, CharField()), Value(":")]
    return Concat(*parts[:-1], output_field=CharField())


def prompt_comparison(*, now: datetime | None = None) -> list[PromptComparisonRow]:
    """Per engine identity over the last PROMPT_COMPARISON_WINDOW; three grouped queries, no row loop."""
    since = (now or timezone.now()) - PROMPT_COMPARISON_WINDOW
    identity = ("engine", "model", "prompt_version")
    jobs = (
        FittingResult.objects.filter(created_at__gte=since, cached=False)
        .values(*identity)
        .order_by(*identity)
        .annotate(
            jobs=Count("id"),
            completed=Count("id", filter=Q(status=Status.COMPLETED)),
            input=Sum("input_tokens"),
            output=Sum("output_tokens"),
            judge_input=Sum("judge_input_tokens"),
            judge_output=Sum("judge_output_tokens"),
        )
    )
    by_job = [f"job__{name}" for name in identity]
    attempts = {
        tuple(row[name] for name in by_job): row
        for row in StepAttempt.objects.filter(job__created_at__gte=since, job__cached=False, shared=False)
        .values(*by_job)
        .order_by(*by_job)
        .annotate(
            attempts=Count(_text("job_id", "category", "number"), distinct=True),
            steps=Count(_text("job_id", "category"), distinct=True),
            checked=Count("id", filter=Q(passed__isnull=False)),
            passed=Count("id", filter=Q(passed=True)),
            judge=Avg(Cast(KT("scores__judge__score"), FloatField())),
            judged=Count(Cast(KT("scores__judge__score"), FloatField())),
        )
    }
    # A reason is a string in the rating's JSON list: matched as its quoted text (SQLite and PostgreSQL).
    reason_counts = {f"reason_{r}": Count("id", filter=Q(reasons__icontains=f'"{r}"')) for r in RatingReason.values}
    ratings = {
        tuple(row[name] for name in by_job): row
        for row in FittingRating.objects.filter(job__created_at__gte=since, job__cached=False)
        .values(*by_job)
        .order_by(*by_job)
        .annotate(ratings=Count("id"), mean=Avg("score"), **reason_counts)
    }
    rows = []
    for row in jobs:
        key = tuple(row[name] for name in identity)
        tried = attempts.get(key, {})
        rated = ratings.get(key, {})
        rows.append(
            PromptComparisonRow(
                *key,
                jobs=row["jobs"],
                completed=row["completed"],
                input_tokens=row["input"] or 0,
                output_tokens=row["output"] or 0,
                judge_input_tokens=row["judge_input"] or 0,
                judge_output_tokens=row["judge_output"] or 0,
                attempts=tried.get("attempts", 0),
                steps=tried.get("steps", 0),
                checked=tried.get("checked", 0),
                passed=tried.get("passed", 0),
                judged=tried.get("judged", 0),
                judge_mean=tried.get("judge"),
                ratings=rated.get("ratings", 0),
                rating_mean=None if rated.get("mean") is None else float(rated["mean"]),
                reasons={r: rated.get(f"reason_{r}", 0) for r in RatingReason.values},
            )
        )
    return rows
