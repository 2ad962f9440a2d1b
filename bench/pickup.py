"""4. Queue pickup latency (enqueued_at → started_at) on the ORM broker and on Redis.

The app's real processes (uvicorn + one qcluster with the default 8 workers, local engine)
on their own database; 40 one-step jobs posted 0.2 s apart after a warm-up (each worker
has run a job, so its first-task imports are not counted). ``started_at`` is set when a
worker claims the job, so the figure is broker poll + pusher + worker hand-off + claim.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import POSTGRES_URL, REDIS_URL, Row, item_ids, log, main, percentile, require, stack

JOBS = int(os.environ.get("BENCH_PICKUP_JOBS", "40"))
SPACING = 0.2
WARMUP = 16


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def measure(label: str, **env: str) -> Row:
    tmp = Path(tempfile.mkdtemp(prefix="bench-pickup-"))
    app = stack(tmp, DJANGO_DEBUG="false", **env)
    try:
        app.prepare()
        app.start_web()
        app.start_cluster()
        with app.client() as client:
            body = {
                "userPhotoUrl": app.photo_url,
                "items": [{"itemId": item_ids(client)["top"], "category": "top"}],
            }
            warm = [client.post("/api/virtual-fitting", json=body).json()["jobId"] for _ in range(WARMUP)]
            for job_id in warm:
                app.wait_for_job(client, job_id, timeout=40)
            job_ids = []
            for _ in range(JOBS):
                started = time.monotonic()
                response = client.post("/api/virtual-fitting", json=body)
                assert response.status_code == 202, response.text
                job_ids.append(response.json()["jobId"])
                time.sleep(max(0.0, SPACING - (time.monotonic() - started)))
            jobs = [app.wait_for_job(client, job_id, timeout=120) for job_id in job_ids]
            ended = sorted({j["status"] for j in jobs})
            require(ended == ["completed"], f"{label}: jobs ended {ended}")
    finally:
        app.stop()
    # createdAt is the API's; enqueued_at is the same instant (set in the same service call).
    waits = [(_ts(j["startedAt"]) - _ts(j["createdAt"])) * 1000 for j in jobs]
    log(
        f"[pickup] {label}: p50 {percentile(waits, 50):.0f} ms, p99 {percentile(waits, 99):.0f} ms, "
        f"max {max(waits):.0f} ms over {len(waits)} jobs"
    )
    return Row(
        f"4. queue pickup (created → started), {label}",
        f"p50 {percentile(waits, 50):.0f} ms, p99 {percentile(waits, 99):.0f} ms ({len(waits)} jobs, 0.2 s apart)",
    )


def _postgres(label: str, **env: str) -> list[Row]:
    """As shipped; if the cluster cannot run jobs on PostgreSQL, again without the pool."""
    try:
        return [measure(label, DATABASE_URL=POSTGRES_URL, **env)]
    except AssertionError as exc:
        log(f"[pickup] {label} as shipped failed: {str(exc)[:200]} … again with CONN_MAX_AGE=0, no pool")
        return [
            Row(
                f"4. queue pickup, {label}, as shipped",
                "could not run: jobs never started",
                "—",
                "no: qcluster broken on PostgreSQL (see report)",
            ),
            measure(
                f"{label}, CONN_MAX_AGE=0 no pool",
                DATABASE_URL=POSTGRES_URL,
                DJANGO_SETTINGS_MODULE="bench.settings_db",
                BENCH_DB_MODE="none",
                **env,
            ),
        ]


def run() -> list[Row]:
    rows = [measure("ORM broker, SQLite (embedded default)")]
    rows += _postgres("ORM broker, PostgreSQL")
    try:
        _flush_redis()
    except Exception as exc:
        rows.append(Row("4. queue pickup, Redis broker", "—", "—", f"not run: Redis unavailable ({exc})"))
        return rows
    rows += _postgres("Redis broker, PostgreSQL", REDIS_URL=REDIS_URL)
    return rows


if __name__ == "__main__":
    main(run)
