"""5. A result-cache hit, end to end: POST of a repeated request → GET showing completed.

The app's real processes (uvicorn + qcluster, local engine, SQLite) with
FITTING_RESULT_CACHE=true. One job completes; then the same request is posted again and
timed from sending the POST to a GET that shows ``completed`` (the POST's own answer already
says ``completed`` for a hit). Repeated 20 times.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Row, item_ids, log, main, met, percentile, require, stack

REPEATS = 20
TARGET_MS = 500  # a hit must feel instant: no queue, no engine
REPEAT_TIMEOUT_S = 30  # a repeat is a cache hit: far longer means it was not one, or it hung
POLL_S = 0.01  # short: the poll's interval is part of the timed figure


def completed(client, job_id: str, timeout: float, interval: float = POLL_S) -> dict:
    """The job once the API shows it ``completed``, polled every ``interval`` seconds.

    Fails the benchmark (no figure) if the job ends in another status or is still
    processing after ``timeout`` seconds, naming the job and what it showed.
    """
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/virtual-fitting/{job_id}")
        require(response.status_code == 200, f"GET job {job_id} answered {response.status_code}: {response.text[:200]}")
        job = response.json()
        if job["status"] == "completed":
            return job
        require(
            job["status"] == "processing",
            f"job {job_id} ended {job['status']} (failedStep {job.get('failedStep')}): {job.get('llmMessage')}",
        )
        require(time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout:g} s")
        time.sleep(interval)


def run() -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    app = stack(tmp, FITTING_RESULT_CACHE="true", DJANGO_DEBUG="false")
    try:
        app.prepare()
        app.start_web()
        app.start_cluster()
        with app.client() as client:
            ids = item_ids(client)
            body = {
                "userPhotoUrl": app.photo_url,
                "items": [{"itemId": ids[c], "category": c} for c in ("top", "bottom", "outer")],
            }
            first = client.post("/api/virtual-fitting", json=body)
            require(first.status_code == 202, f"first POST answered {first.status_code}: {first.text[:200]}")
            completed(client, first.json()["jobId"], timeout=120, interval=0.25)  # made by the engine
            totals, posts, statuses = [], [], set()
            for _ in range(REPEATS):
                started = time.perf_counter()
                answer = client.post("/api/virtual-fitting", json=body)
                posts.append((time.perf_counter() - started) * 1000)
                require(answer.status_code < 300, f"repeat POST answered {answer.status_code}: {answer.text[:200]}")
                statuses.add(answer.json()["status"])
                completed(client, answer.json()["jobId"], timeout=REPEAT_TIMEOUT_S)
                totals.append((time.perf_counter() - started) * 1000)
    finally:
        app.stop()
    log(
        f"[cache] POST alone p50 {statistics.median(posts):.0f} ms; POST→completed p50 "
        f"{statistics.median(totals):.0f} ms p99 {percentile(totals, 99):.0f} ms; POST statuses {statuses}"
    )
    p50 = statistics.median(totals)
    return [
        Row(
            "5. cache hit, POST sent → GET shows completed (SQLite)",
            f"p50 {p50:.0f} ms, p99 {percentile(totals, 99):.0f} ms (POST alone {statistics.median(posts):.0f} ms; "
            f"POST answered {'/'.join(sorted(statuses))})",
            f"≤ {TARGET_MS} ms, POST says completed",
            met(p50 <= TARGET_MS and statuses == {"completed"}),
        )
    ]


if __name__ == "__main__":
    main(run)
