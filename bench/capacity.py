"""3. Capacity: 32 workers, an engine taking 2 s per image call, 64 jobs of three steps.

The app's real processes (uvicorn + one ``qcluster`` with FITTING_WORKERS=32) on a fresh
PostgreSQL database, the Gemini engine pointed at a fake Gemini server in this process
that answers each image call after ``delay(2)`` (server-side sleep; one thread per
connection, so 32 calls wait side by side) and the message at once. The workers are warmed
first (32 one-step jobs, so each has imported the engine), then 64 three-step jobs are
posted at once. Throughput = 64 ÷ (last finished_at − first created_at); ideal = workers ÷
job time (3 × 2 s + a message that answers at once).

Memory: the qcluster process tree, read from /proc, at its peak during the run. RSS counts
pages shared by the forked workers in every worker; PSS shares them out fairly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from bench.common import (
    POSTGRES_URL,
    ROOT,
    Row,
    cheap_fake_gemini,
    item_ids,
    log,
    main,
    make_photo,
    memory_kb,
    met,
    process_tree,
    require,
    stack,
    upload_photo,
    wait_until,
)

WORKERS = int(os.environ.get("BENCH_CAPACITY_WORKERS", "32"))
JOBS = int(os.environ.get("BENCH_CAPACITY_JOBS", "64"))
STEP_SECONDS = 2.0
TARGET_RATIO = 0.90
TARGET_MB_PER_WORKER = 100


def _tree_memory(root: int) -> dict:
    tree = process_tree(root)
    mems = {pid: memory_kb(pid) for pid, _ in tree}
    workers = [mems[pid] for pid, depth in tree if depth == 2]  # qcluster → sentinel → workers
    return {
        "processes": len(tree),
        "rss": sum(m["rss"] for m in mems.values()),
        "pss": sum(m["pss"] for m in mems.values()),
        "worker_rss": [m["rss"] for m in workers],
        "worker_pss": [m["pss"] for m in workers],
        "worker_uss": [m["uss"] for m in workers],
    }


def _parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def import_weight() -> list[str]:
    """RSS of a fresh process after django.setup(), then after each engine's imports."""
    code = r"""
import os, sys, django
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) // 1024
django.setup(); base = rss()
import fitting.tasks, fitting.pipeline; pipe = rss()
import fitting.engines.gemini; gem = rss()
import fitting.engines.local; loc = rss()
print(base, pipe, gem, loc)
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    base, pipe, gem, loc = map(int, out.stdout.split())
    return [
        f"django.setup() (all apps): {base} MB RSS",
        f"+ fitting.pipeline: {pipe} MB (+{pipe - base})",
        f"+ google-genai (gemini engine): {gem} MB (+{gem - pipe})",
        f"+ cv2/numpy (local engine): {loc} MB (+{loc - gem})",
    ]


class ClusterBroken(Exception):
    pass


def _run(database_url: str, label: str, **extra_env: str) -> list[Row]:
    fake = cheap_fake_gemini().start()
    from tests.fakegemini import delay

    fake.script_image(*(delay(0.5) for _ in range(WORKERS)))
    fake.script_image(*(delay(STEP_SECONDS) for _ in range(JOBS * 3)))
    tmp = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    app = stack(
        tmp,
        DATABASE_URL=database_url,
        FITTING_WORKERS=str(WORKERS),
        FITTING_ENGINE="gemini",
        GEMINI_API_KEY="bench-key",
        GEMINI_BASE_URL=fake.base_url,
        DJANGO_DEBUG="false",
        **extra_env,
    )
    try:
        app.prepare()
        app.start_web()
        with app.client() as client:
            photo_url = upload_photo(client, make_photo())
            ids = item_ids(client)
        cluster = app.start_cluster()
        wait_until(lambda: len(process_tree(cluster.pid)) >= WORKERS + 3, 60, 0.2)
        time.sleep(2)
        idle = _tree_memory(cluster.pid)

        def post(items: list[str]) -> str:
            body = {"userPhotoUrl": photo_url, "items": [{"itemId": ids[c], "category": c} for c in items]}
            with app.client() as c:
                response = c.post("/api/virtual-fitting", json=body)
            require(response.status_code == 202, f"POST answered {response.status_code}: {response.text[:200]}")
            return response.json()["jobId"]

        def wait_all(client, job_ids: list[str], timeout: float) -> list[dict]:
            pending, done = set(job_ids), {}
            deadline = time.monotonic() + timeout
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    job = client.get(f"/api/virtual-fitting/{job_id}").json()
                    if job["status"] != "processing":
                        done[job_id] = job
                        pending.discard(job_id)
                time.sleep(0.5)
            if pending:
                log(app.output("worker")[-2500:])
                raise ClusterBroken(f"{len(pending)} of {len(job_ids)} jobs never finished")
            return list(done.values())

        with ThreadPoolExecutor(8) as pool, app.client() as client:
            warm_started = time.monotonic()
            warm = list(pool.map(post, [["top"]] * WORKERS))
            wait_all(client, warm, 120)
            log(
                f"[capacity:{label}] warm-up of {WORKERS} one-step jobs (0.5 s engine) on cold workers took "
                f"{time.monotonic() - warm_started:.1f} s (each worker imports the engine on its first task)"
            )
            warmed = _tree_memory(cluster.pid)

            peak = {"pss": 0}
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    current = _tree_memory(cluster.pid)
                    if current["pss"] > peak["pss"]:
                        peak.update(current)
                    stop.wait(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            job_ids = list(pool.map(post, [["top", "bottom", "outer"]] * JOBS))
            jobs = wait_all(client, job_ids, 180)
            stop.set()
            sampler.join()
        failed = [j for j in jobs if j["status"] != "completed"]
        require(not failed, f"{len(failed)} of {len(jobs)} jobs did not complete: {failed[:2]}")
        require(not fake.errors, f"the fake Gemini could not answer: {fake.errors[:2]}")
        # The work measured: every step of every job made by the engine (no step reuse).
        calls, steps = len(fake.image_requests), WORKERS + JOBS * 3
        require(calls >= steps, f"{calls} image calls reached the engine for {steps} steps")
    finally:
        app.stop()
        fake.stop()

    created = [_parse(j["createdAt"]) for j in jobs]
    started = [_parse(j["startedAt"]) for j in jobs]
    finished = [_parse(j["finishedAt"]) for j in jobs]
    makespan = max(finished) - min(created)
    throughput = JOBS / makespan
    ideal = WORKERS / (3 * STEP_SECONDS)
    durations = sorted(f - s for s, f in zip(started, finished))
    log(
        f"[capacity:{label}] posting took {max(created) - min(created):.2f} s; makespan {makespan:.1f} s "
        f"(ideal {JOBS / ideal:.1f} s); job run time p50 {durations[len(durations) // 2]:.2f} s, "
        f"max {durations[-1]:.2f} s (ideal {3 * STEP_SECONDS:.1f} s)"
    )
    mb = 1024
    for name, m in (("idle, just started", idle), ("after warm-up", warmed), ("peak during the run", peak)):
        w = m["worker_rss"]
        log(
            f"[capacity:{label}] {name}: {m['processes']} processes, RSS sum {m['rss'] / mb:.0f} MB, "
            f"PSS sum {m['pss'] / mb:.0f} MB; per worker RSS mean {sum(w) / len(w) / mb:.0f} MB max {max(w) / mb:.0f} MB, "
            f"PSS mean {sum(m['worker_pss']) / len(w) / mb:.0f} MB, USS mean {sum(m['worker_uss']) / len(w) / mb:.0f} MB"
        )
    worker_rss = peak["worker_rss"]
    per_worker = max(worker_rss) / mb
    ratio = throughput / ideal
    return [
        Row(
            f"3. capacity, {WORKERS} workers, {JOBS}×3 steps at {STEP_SECONDS:.0f} s ({label})",
            f"{throughput:.2f} jobs/s = {ratio:.0%} of ideal {ideal:.2f} (makespan {makespan:.1f} s vs "
            f"{JOBS / ideal:.0f} s; job run p50 {durations[len(durations) // 2]:.1f} s)",
            f"≥ {TARGET_RATIO:.0%} of ideal",
            met(ratio >= TARGET_RATIO),
        ),
        Row(
            f"3. cluster memory at peak ({label})",
            f"RSS sum {peak['rss'] / mb:.0f} MB, PSS sum {peak['pss'] / mb:.0f} MB; per worker RSS max "
            f"{per_worker:.0f} MB (mean {sum(worker_rss) / len(worker_rss) / mb:.0f}), PSS mean "
            f"{sum(peak['worker_pss']) / len(worker_rss) / mb:.0f} MB",
            f"≤ {TARGET_MB_PER_WORKER} MB RSS per worker",
            met(per_worker <= TARGET_MB_PER_WORKER),
        ),
    ]


def run() -> list[Row]:
    rows = []
    for line in import_weight():
        log(f"[capacity] import weight: {line}")
    databases = os.environ.get("BENCH_CAPACITY_DATABASES", "postgres").split(",")
    for name in databases:
        if name == "postgres":
            try:
                rows += _run(POSTGRES_URL, "PostgreSQL")
            except ClusterBroken as exc:
                log(f"[capacity] as shipped on PostgreSQL: {exc}; again without the connection pool")
                rows.append(
                    Row(
                        "3. capacity on PostgreSQL, settings as shipped",
                        f"could not run: {exc}",
                        f"≥ {TARGET_RATIO:.0%} of ideal",
                        "no: qcluster broken (see report)",
                    )
                )
                rows += _run(
                    POSTGRES_URL,
                    "PostgreSQL, CONN_MAX_AGE=0 no pool",
                    DJANGO_SETTINGS_MODULE="bench.settings_db",
                    BENCH_DB_MODE="none",
                )
        elif name == "sqlite":
            rows += _run("", "SQLite")
    return rows


if __name__ == "__main__":
    main(run)
