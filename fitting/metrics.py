"""GET /metrics: the service's figures in the Prometheus text format, for operators.

Where the figures come from, and why: every figure is read from the database (and the queue's
broker) when Prometheus scrapes, by a custom collector; nothing is kept in a process's memory.
The service runs as several web processes and worker nodes; a figure kept per process (or
per node, with prometheus_client's multiprocess mode) would be right only summed over every
process of every node, and lost when a node goes. Here any web process answers for all.

- Counters (jobs ended, step latencies, engine outcomes, tokens) are rows of ``MetricCounter``,
  added to by the services in the same transaction as the change they count: a job finished
  on any node counts exactly once (its conditional status update and its count commit or
  roll back together), and they never go down when old jobs are deleted by the retention.
  A scrape reads that small table (one row per series, independent of the number of jobs).
- Gauges (jobs in progress, queue depth and the age of the oldest queued job) are bounded
  queries: the processing jobs (a few, by the status index) and the broker's queue length.
- The estimated cost is the token counters priced with FITTING_PRICES at scrape time.
- Open event streams live in the web processes' memory: each process's watcher reports its
  count to a ``StreamCount`` row every ``STREAMS_REPORT_EVERY`` seconds (and at
  once when its last stream closes); a scrape sums the rows fresher than ``STREAMS_FRESH``.

Counters start at zero when this is deployed; jobs finished before are not counted.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Min, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from core.errors import ErrorCode
from core.exceptions import error_body
from fitting import costs
from fitting.models import FittingResult, MetricCounter, Status, StreamCount

logger = logging.getLogger(__name__)

# Seconds; a step is one image call (with its retries), usually 5 to 30 s with Gemini.
LATENCY_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

JOBS = "fitting_jobs_total"
OUTCOMES = "fitting_engine_outcomes_total"
TOKENS = "fitting_tokens_total"
REUSED = "fitting_steps_reused_total"
CACHE_HITS = "fitting_result_cache_hits_total"
LATENCY_BUCKET = "fitting_step_latency_seconds_bucket"  # per bucket, not cumulative (summed at scrape)
LATENCY_SUM = "fitting_step_latency_seconds_sum"
QUALITY_CHECKS = "fitting_quality_checks_total"
STEP_ATTEMPTS = "fitting_step_attempts_total"
ENGINE_CALLS = "fitting_engine_calls_total"
OK = "OK"  # the outcome of a step that made its image

# Open event streams for /metrics: how often a web process reports its count, and when a
# report is too old to count (its process died, or stopped reporting).
STREAMS_REPORT_EVERY = 15
STREAMS_FRESH = timedelta(seconds=4 * STREAMS_REPORT_EVERY)


# --- counting: called by the services inside the transaction of the change they count ------
def _labels(**labels: str) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def _bucket(seconds: float) -> str:
    return next((str(bound) for bound in LATENCY_BUCKETS if seconds <= bound), "+Inf")


def counters_add(increments: dict[tuple[str, str], float]) -> None:
    """Add to counters (``(name, labels JSON) -> amount``); a series seen for the first time is created.

    Rows are updated in one fixed order, so two transactions never wait on each other's rows
    the other way round (no deadlock between workers).
    """
    for (name, labels), amount in sorted(increments.items()):
        if not amount:
            continue
        rows = MetricCounter.objects.filter(name=name, labels=labels)
        if rows.update(value=F("value") + amount):
            continue
        try:
            with transaction.atomic():
                MetricCounter.objects.create(name=name, labels=labels, value=amount)
        except IntegrityError:  # created meanwhile by another transaction
            rows.update(value=F("value") + amount)


def count_step_finished(
    *, job: FittingResult, step: str, latency_ms: int, tokens: Iterable[tuple[str, int, int]]
) -> None:
    """A step's image stored; ``tokens``: (model, input, output) of the image model, and of the judge."""
    seconds = latency_ms / 1000
    counters_add(
        {
            (LATENCY_BUCKET, _labels(category=step, le=_bucket(seconds))): 1,
            (LATENCY_SUM, _labels(category=step)): seconds,
            (OUTCOMES, _labels(engine=job.engine, code=OK)): 1,
            **_token_counts(tokens),
        }
    )


def count_tokens(*, model: str, input_tokens: int, output_tokens: int) -> None:
    """Tokens of an attempt the quality gate rejected (paid for, though no image was kept)."""
    counters_add(_token_counts([(model, input_tokens, output_tokens)]))


def _token_counts(tokens: Iterable[tuple[str, int, int]]) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for model, input_tokens, output_tokens in tokens:
        counts[(TOKENS, _labels(model=model, kind="input"))] += input_tokens
        counts[(TOKENS, _labels(model=model, kind="output"))] += output_tokens
    return counts


def count_step_attempt(*, job: FittingResult, outcome: str, checks: dict[str, str]) -> None:
    """One engine call of a step, and its quality checks' outcomes (``{check: passed|failed|skipped}``)."""
    increments = {(STEP_ATTEMPTS, _labels(engine=job.engine, outcome=outcome)): 1}
    for check, check_outcome in checks.items():
        increments[(QUALITY_CHECKS, _labels(check=check, outcome=check_outcome))] = 1
    counters_add(increments)


def count_engine_calls(*, job: FittingResult, calls: int) -> None:
    """Image-model calls about to be made (what the usage ledger's engine_calls counts): every
    candidate's call and every retry, whether it answers, fails or is outranked."""
    counters_add({(ENGINE_CALLS, _labels(engine=job.engine, model=job.model)): calls})


def count_steps_reused(*, steps: list[str]) -> None:
    counters_add({(REUSED, _labels(category=step)): 1 for step in steps})


def count_job_ended(*, job: FittingResult, status: str, code: str = "", cache_hit: bool = False) -> None:
    """A job (an attempt of it) ended: completed, failed, timeout or canceled."""
    increments = {(JOBS, _labels(status=status, engine=job.engine)): 1}
    if code:
        increments[(OUTCOMES, _labels(engine=job.engine, code=code))] = 1
    if cache_hit:
        increments[(CACHE_HITS, _labels(engine=job.engine))] = 1
    counters_add(increments)


# --- open event streams: each web process's watcher reports its count ---------------------
def streams_report(*, count: int) -> None:
    """Record the number of event streams this process holds open (for /metrics)."""
    process = f"{socket.gethostname()}:{os.getpid()}"
    StreamCount.objects.update_or_create(
        process=process, defaults={"open_streams": count, "updated_at": timezone.now()}
    )


def open_streams_total() -> int:
    """Open event streams across every web process: the sum of the fresh reports (GET /metrics)."""
    fresh = StreamCount.objects.filter(updated_at__gte=timezone.now() - STREAMS_FRESH)
    return fresh.aggregate(total=Sum("open_streams"))["total"] or 0


# --- the scrape -------------------------------------------------------------------------------
class FittingCollector:
    """Reads the figures at scrape time (see the module's docstring)."""

    def collect(self) -> Iterator[Metric]:
        series: dict[str, list[tuple[dict, float]]] = defaultdict(list)
        for name, labels, value in MetricCounter.objects.values_list("name", "labels", "value"):
            series[name].append((json.loads(labels), value))
        yield from self._counters(series)
        yield self._latency(series)
        yield from self._gauges()

    def _counters(self, series) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "fitting_jobs", "Jobs (attempts) that ended, by final status and engine.", labels=["status", "engine"]
        )
        for labels, value in series[JOBS]:
            jobs.add_metric([labels["status"], labels["engine"]], value)
        yield jobs
        outcomes = CounterMetricFamily(
            "fitting_engine_outcomes",
            "Outcomes of the engine's steps: OK (an image made) or the error code the job failed with.",
            labels=["engine", "code"],
        )
        for labels, value in series[OUTCOMES]:
            outcomes.add_metric([labels["engine"], labels["code"]], value)
        yield outcomes
        tokens = CounterMetricFamily(
            "fitting_tokens",
            "Tokens the image steps used, by model and kind (input, output).",
            labels=["model", "kind"],
        )
        cost = CounterMetricFamily(
            "fitting_cost_usd",
            "Estimated cost of the image steps in USD (tokens priced with FITTING_PRICES), by model.",
            labels=["model"],
        )
        by_model: dict[str, dict[str, float]] = defaultdict(dict)
        for labels, value in series[TOKENS]:
            tokens.add_metric([labels["model"], labels["kind"]], value)
            by_model[labels["model"]][labels["kind"]] = value
        for model, kinds in sorted(by_model.items()):
            price = costs.tokens_cost(model, int(kinds.get("input", 0)), int(kinds.get("output", 0)))
            if price is not None:
                cost.add_metric([model], float(price))
        yield tokens
        yield cost
        reused = CounterMetricFamily(
            "fitting_steps_reused", "Steps taken from another job's images instead of the engine.", labels=["category"]
        )
        for labels, value in series[REUSED]:
            reused.add_metric([labels["category"]], value)
        yield reused
        hits = CounterMetricFamily(
            "fitting_result_cache_hits", "Jobs completed at once from an earlier result.", labels=["engine"]
        )
        for labels, value in series[CACHE_HITS]:
            hits.add_metric([labels["engine"]], value)
        yield hits
        checks = CounterMetricFamily(
            "fitting_quality_checks",
            "Quality checks of the steps' answers, by check and outcome (passed, failed, skipped).",
            labels=["check", "outcome"],
        )
        for labels, value in series[QUALITY_CHECKS]:
            checks.add_metric([labels["check"], labels["outcome"]], value)
        yield checks
        attempts = CounterMetricFamily(
            "fitting_step_attempts",
            "Engine calls of the steps (the quality gate's retries included), by engine and outcome "
            "(accepted, rejected, best, unchecked).",
            labels=["engine", "outcome"],
        )
        for labels, value in series[STEP_ATTEMPTS]:
            attempts.add_metric([labels["engine"], labels["outcome"]], value)
        yield attempts
        calls = CounterMetricFamily(
            "fitting_engine_calls",
            "Calls of the image model by the steps (every candidate and retry; one per try-on call), "
            "by engine and model.",
            labels=["engine", "model"],
        )
        for labels, value in series[ENGINE_CALLS]:
            calls.add_metric([labels["engine"], labels["model"]], value)
        yield calls

    def _latency(self, series) -> Metric:
        histogram = HistogramMetricFamily(
            "fitting_step_latency_seconds", "Time of a step's engine call, by category.", labels=["category"]
        )
        counts: dict[str, dict[str, float]] = defaultdict(dict)
        for labels, value in series[LATENCY_BUCKET]:
            counts[labels["category"]][labels["le"]] = value
        sums = {labels["category"]: value for labels, value in series[LATENCY_SUM]}
        for category in sorted(counts):
            cumulative, buckets = 0.0, []
            for bound in [*map(str, LATENCY_BUCKETS), "+Inf"]:
                cumulative += counts[category].get(bound, 0)
                buckets.append((bound, cumulative))
            histogram.add_metric([category], buckets, sums.get(category, 0.0))
        return histogram

    def _gauges(self) -> Iterator[Metric]:
        processing = FittingResult.objects.filter(status=Status.PROCESSING)
        in_progress = GaugeMetricFamily(
            "fitting_jobs_in_progress", "Jobs processing now (queued or running), by engine.", labels=["engine"]
        )
        for row in processing.values("engine").annotate(n=Count("id")).order_by("engine"):
            in_progress.add_metric([row["engine"]], row["n"])
        yield in_progress
        oldest = processing.filter(started_at__isnull=True).aggregate(oldest=Min("enqueued_at"))["oldest"]
        yield GaugeMetricFamily(
            "fitting_queue_oldest_age_seconds",
            "Age of the oldest job waiting for a worker (enqueued, not started); 0 when none.",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0.0,
        )
        depth = _queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("fitting_queue_depth", "Tasks waiting in the broker's queue.", value=depth)
        yield GaugeMetricFamily(
            "fitting_event_streams_open",
            "Open event streams, all web processes together.",
            value=open_streams_total(),
        )


def _queue_depth() -> int | None:
    from django_q.brokers import get_broker

    try:
        return get_broker().queue_size()
    except Exception:  # a broker that is down leaves the figure out; /healthz reports it
        logger.warning("metrics: the broker's queue length could not be read", exc_info=True)
        return None


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(FittingCollector())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics with ``Authorization: Bearer <METRICS_TOKEN>``; 404 while METRICS_TOKEN is unset."""
    token = settings.METRICS_TOKEN
    if not token:
        return JsonResponse(error_body(ErrorCode.NOT_FOUND, _("Not found.")), status=404)
    given = request.headers.get("Authorization", "")
    if not constant_time_compare(given.encode(), f"Bearer {token}".encode()):
        response = JsonResponse(
            error_body(ErrorCode.NOT_AUTHENTICATED, _("Authentication credentials were not provided or are wrong.")),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4)
