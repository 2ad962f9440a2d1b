"""7. GET /metrics with 100,000 jobs in the database, on SQLite and on PostgreSQL (issue 16).

Each database runs in a child process of its own (``python -m bench.metrics child sqlite|postgres``):
migrate, bulk-create 100,000 jobs (their status, engine, tokens and step metrics as the
pipeline leaves them; a few hundred still processing, some of them queued) and the counter rows
those jobs would have left (``fitting.metrics`` keeps one row per series), queue 50 tasks on the
ORM broker, then time ``GET /metrics`` through Django's test client (the whole view: token check,
the collector's queries, the text rendering). For comparison it also times what deriving the
figures from the jobs at scrape time would cost (GROUP BY status and engine, SUM of tokens over
every job), and what counting costs a worker (``count_step_finished`` in a step's transaction).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.common import POSTGRES_URL, ROOT, ROWS_MARK, Row, emit, log, main, met, percentile

JOBS = 100_000
SCRAPES = 200
TARGET_MS = 100
TOKEN = "bench-metrics-token"
BENCH_DATABASE = "bench_metrics"


def _postgres_url() -> str:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE}")
        conn.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{BENCH_DATABASE}"


def _seed() -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from django_q.tasks import async_task

    from fitting import metrics
    from fitting.models import FittingResult, MetricCounter, Status

    rng = random.Random(16)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"bench{n}", password="!") for n in range(200)
    )
    now = timezone.now()
    codes = ["ENGINE_REJECTED", "ENGINE_BLOCKED", "ENGINE_UNAVAILABLE", "ENGINE_NO_IMAGE", "INTERNAL_ERROR"]
    counters: dict[tuple[str, str], float] = {}

    def add(name: str, amount: float, **labels: str) -> None:
        key = (name, metrics._labels(**labels))
        counters[key] = counters.get(key, 0) + amount

    batch = []
    for n in range(JOBS):
        roll = rng.random()
        status = (
            Status.COMPLETED
            if roll < 0.88
            else Status.FAILED
            if roll < 0.96
            else Status.TIMEOUT
            if roll < 0.997
            else Status.PROCESSING
        )
        steps = ["top", "bottom", "outer"][: rng.randint(1, 3)]
        step_metrics, tokens_in, tokens_out = {}, 0, 0
        for step in steps:
            latency = rng.randint(4_000, 40_000)
            step_metrics[step] = {
                "latency_ms": latency,
                "prompt_tokens": 1290,
                "candidates_tokens": 1290,
                "total_tokens": 2580,
            }
            tokens_in, tokens_out = tokens_in + 1290, tokens_out + 1290
            add(metrics.LATENCY_BUCKET, 1, category=step, le=metrics._bucket(latency / 1000))
            add(metrics.LATENCY_SUM, latency / 1000, category=step)
            add(metrics.OUTCOMES, 1, engine="gemini", code=metrics.OK)
        add(metrics.TOKENS, tokens_in, model="gemini-2.5-flash-image", kind="input")
        add(metrics.TOKENS, tokens_out, model="gemini-2.5-flash-image", kind="output")
        code = rng.choice(codes) if status == Status.FAILED else "TIMEOUT" if status == Status.TIMEOUT else ""
        if status != Status.PROCESSING:
            add(metrics.JOBS, 1, status=status, engine="gemini")
        if code:
            add(metrics.OUTCOMES, 1, engine="gemini", code=code)
        created = now - timedelta(minutes=rng.randint(0, 60 * 24 * 30))
        queued = status == Status.PROCESSING and n % 2 == 0
        batch.append(
            FittingResult(
                owner=users[n % len(users)],
                status=status,
                engine="gemini",
                model="gemini-2.5-flash-image",
                prompt_version="g-3",
                step_metrics=step_metrics,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                error_code=code,
                cache_key=f"{n:064x}",
                created_at=created,
                enqueued_at=now - timedelta(seconds=rng.randint(1, 120)) if queued else created,
                started_at=None if queued else created,
                finished_at=None if status == Status.PROCESSING else created + timedelta(seconds=30),
                deadline_at=created + timedelta(minutes=5),
            )
        )
        if len(batch) == 5000:
            FittingResult.objects.bulk_create(batch)
            batch = []
    FittingResult.objects.bulk_create(batch)
    MetricCounter.objects.bulk_create(
        MetricCounter(name=name, labels=labels, value=value) for (name, labels), value in counters.items()
    )
    for n in range(50):
        async_task("math.floor", n)  # the ORM broker's queue: 50 waiting tasks
    log(f"[metrics] seeded {FittingResult.objects.count()} jobs, {MetricCounter.objects.count()} counter rows")


def _time(fn, times: int) -> list[float]:
    fn()  # warm: connection, imports, first compile of the queries
    out = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def child(database: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    url = _postgres_url() if database == "postgres" else f"sqlite:///{tmp / 'db.sqlite3'}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings_db" if database == "postgres" else "config.settings.local",
            "BENCH_DB_MODE": "persistent",  # one web thread's connection, kept (as the pool would)
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": url,
            "MEDIA_ROOT": str(tmp / "media"),
            "METRICS_TOKEN": TOKEN,
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count, Sum
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from fitting import metrics
    from fitting.models import FittingResult

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    _seed()
    if database == "postgres":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    log(f"[metrics] {database}: ready in {time.monotonic() - started:.0f} s")

    client = Client(headers={"Authorization": f"Bearer {TOKEN}"})

    def scrape() -> None:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content[:200]

    with CaptureQueriesContext(connection) as queries:
        scrape()
    n_queries = len(queries.captured_queries)
    log(f"[metrics] {database}: {n_queries} queries per scrape:")
    for query in queries.captured_queries:
        log(f"    {query['time']} s  {query['sql'][:140]}")
    text = client.get("/metrics").content.decode()
    log(f"[metrics] {database}: {len(text.splitlines())} lines, {len(text)} bytes; e.g.")
    for line in text.splitlines():
        if line.startswith(("fitting_jobs_total", "fitting_queue", "fitting_cost")):
            log(f"    {line}")
    scrapes = _time(scrape, SCRAPES)

    def derived() -> None:  # the alternative: the same figures from the jobs at every scrape
        list(FittingResult.objects.values("status", "engine").annotate(n=Count("id")).order_by())
        FittingResult.objects.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))

    alternative = _time(derived, 20)

    job = FittingResult.objects.filter(status="completed").first()

    from django.db import transaction
    from django.utils import timezone

    def step_write(count: bool) -> None:  # a step's transaction (its job row's update), with or without counting
        with transaction.atomic():
            FittingResult.objects.filter(id=job.id).update(updated_at=timezone.now())
            if count:
                metrics.count_step_finished(job=job, step="top", latency_ms=8123, tokens=[(job.model, 1290, 1290)])

    baseline = _time(lambda: step_write(False), 200)
    counting = _time(lambda: step_write(True), 200)
    label = "SQLite" if database == "sqlite" else "PostgreSQL"
    p50, p99 = percentile(scrapes, 50), percentile(scrapes, 99)
    emit(
        [
            Row(
                f"7. GET /metrics, {label}, {JOBS:,} jobs",
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({SCRAPES} scrapes, {n_queries} queries)",
                f"< {TARGET_MS} ms",
                met(p99 < TARGET_MS),
            ),
            Row(
                f"7. alternative: derive from the jobs at scrape, {label}",
                f"p50 {percentile(alternative, 50):.1f} ms (GROUP BY status, engine + SUM tokens only)",
            ),
            Row(
                f"7. a step's transaction without / with its counts, {label}",
                f"p50 {percentile(baseline, 50):.2f} / {percentile(counting, 50):.2f} ms, "
                f"p99 {percentile(baseline, 99):.2f} / {percentile(counting, 99):.2f} ms",
            ),
        ]
    )


def run() -> list[Row]:
    rows: list[Row] = []
    for database in ("sqlite", "postgres"):
        log(f"[metrics] {database}")
        process = subprocess.run(
            [sys.executable, "-m", "bench.metrics", "child", database],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            timeout=900,
            check=False,
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith(ROWS_MARK)]
        if not lines:
            rows.append(Row(f"7. GET /metrics, {database}", "—", f"< {TARGET_MS} ms", "crashed; see stderr"))
            continue
        import json

        rows += [Row(**row) for row in json.loads(lines[-1][len(ROWS_MARK) :])]
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2])
    else:
        main(run)
