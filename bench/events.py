"""7. Event streams at scale: N open streams on one uvicorn process (issue 15).

For each database (PostgreSQL: LISTEN/NOTIFY; SQLite: one batched poll; optionally
PostgreSQL + Redis pub/sub) and each N of ``BENCH_EVENTS_SIZES`` (default ``10,1000``; the
README's run: ``10,1000,5000``), a fresh uvicorn process (``tests.e2e.Stack``, no qcluster)
with ``FITTING_EVENTS_PER_USER=0`` (one user holds all the streams). One job, claimed, never
run by a worker; all N streams follow it (the worst fan-out: every change goes to all N).

The client is this process: N raw asyncio connections (a few KB each; httpx would spend the
two cores on itself), opened 100 at a time, each reading until its first ``job`` event.
Then, with the N streams idle:

- **memory**: VmRSS of the uvicorn process before opening and once all are open; per stream =
  the difference ÷ N. Threads of the process (``/proc/<pid>/task``) before and after.
- **database load** over a 30 s window (one re-check of a notice backend falls in it): PostgreSQL ``xact_commit`` of the stack's database
  (``pg_stat_database``, minus the measuring connection's own reads), and the web process's
  SQL queries/s on both databases (``bench/settings_events.py`` counts them in the process).
- **latency**: 40 sequential ``GET /healthz`` and 40 ``GET /api/virtual-fitting/<id>``.
- **change to delivery**: ``BENCH_EVENTS_CHANGES`` (10) changes of the job, made in this
  process through the service the pipeline uses (``fitting_step_started``, which publishes
  the notice after commit), one at a time; for each, the time from just before the service
  call to the moment the last of the N streams has the new state. p50 and p99 over the changes
  (the per-stream p50 goes to stderr).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import POSTGRES_URL, REDIS_URL, Row, emit, log, memory_kb, met, percentile, stack
from tests.e2e import stop_process

SIZES = [int(n) for n in os.environ.get("BENCH_EVENTS_SIZES", "10,1000").split(",")]
DATABASES = os.environ.get("BENCH_EVENTS_DATABASES", "postgres,sqlite").split(",")
CHANGES = int(os.environ.get("BENCH_EVENTS_CHANGES", "10"))
WINDOW = float(os.environ.get("BENCH_EVENTS_WINDOW", "30"))  # includes one 30 s re-check
LATENCY_SAMPLES = 40
SETTLE = 12.0
OPEN_AT_ONCE = 100

TARGET_LOAD_RATIO = 2.0  # database load at 1,000 streams within 2x that of 10
TARGET_HEALTHZ_P50_MS = 50  # with 1,000 streams open
TARGET_DELIVERY_P99_S = 1.0
TARGET_KB_PER_STREAM = 100


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


class Stream:
    """One SSE connection read raw: it only needs to know when a marker has arrived."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.port, self.path, self.token = port, path, token
        self.buffer = b""
        self.marker: bytes | None = None
        self.arrived = asyncio.Event()
        self.arrived_at = 0.0
        self.task: asyncio.Task | None = None
        self.writer: asyncio.StreamWriter | None = None

    def expect(self, marker: bytes) -> None:
        self.marker, self.buffer = marker, b""
        self.arrived = asyncio.Event()

    async def open(self) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {self.token}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await self.writer.drain()
        self.expect(b"event: job")
        self.task = asyncio.create_task(self._read(reader))
        await self.arrived.wait()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            if self.marker is None or self.arrived.is_set():
                continue
            self.buffer = (self.buffer + chunk)[-65536:]
            if self.marker in self.buffer:
                self.arrived_at = time.perf_counter()
                self.arrived.set()

    def close(self) -> None:
        if self.task:
            self.task.cancel()
        if self.writer:
            self.writer.close()


async def latencies(base: str, token: str, path: str) -> list[float]:
    import httpx

    out = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        for _ in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            response = await client.get(path)
            out.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return out


def _profile(pid: int):
    """With ``BENCH_EVENTS_PROFILE=<file>``: py-spy samples the web process during the changes."""
    out = os.environ.get("BENCH_EVENTS_PROFILE")
    if not out:
        return None
    import subprocess

    command = [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-o", out, "-r", "200"]
    return subprocess.Popen([*command, "-f", "speedscope" if out.endswith(".json") else "raw"])


def pg_commits(database_url: str) -> int | None:
    if not database_url.startswith("postgres"):
        return None
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [name]).fetchone()[0]


def gc_times(count_file: Path) -> dict:
    """The web process's time in the garbage collector so far, by generation (settings_events)."""
    try:
        return json.loads(Path(f"{count_file}.gc").read_text())
    except (OSError, ValueError):
        return {"seconds": [0.0, 0.0, 0.0], "count": [0, 0, 0]}


def query_count(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


async def measure(app, n: int, job_id: str, change, count_file: Path) -> dict:
    pid = app.processes["web"].pid
    rss_before, threads_before = memory_kb(pid)["rss"], threads(pid)
    streams = [Stream(app.port, f"/api/virtual-fitting/{job_id}/events", app.token) for _ in range(n)]
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def open_one(stream: Stream) -> None:
        async with gate:
            await asyncio.wait_for(stream.open(), 60)

    started = time.perf_counter()
    await asyncio.gather(*(open_one(s) for s in streams))
    opened_in = time.perf_counter() - started
    # Settle: the open requests' threads end, and PostgreSQL (15+) backends flush their
    # statistics up to 10 s after going idle: commits of the opening must not land in the window.
    await asyncio.sleep(SETTLE)
    rss_open, threads_open = memory_kb(pid)["rss"], threads(pid)

    # Database load while the N streams are idle.
    commits0, queries0 = pg_commits(app.database.url), query_count(count_file)
    await asyncio.sleep(WINDOW)
    commits1, queries1 = pg_commits(app.database.url), query_count(count_file)
    log(f"  window: commits {commits0} -> {commits1}, queries {queries0} -> {queries1}")
    # pg_commits' own transaction on the stack's database: none (it reads from "postgres").
    xact_per_s = None if commits0 is None else (commits1 - commits0) / WINDOW
    queries_per_s = (queries1 - queries0) / WINDOW

    healthz = await latencies(app.base, app.token, "/healthz")
    job_get = await latencies(app.base, app.token, f"/api/virtual-fitting/{job_id}")

    profiler = _profile(pid)
    gc0 = gc_times(count_file)
    deliveries, per_stream = [], []
    for k in range(CHANGES):
        step = ("bottom", "top")[k % 2]
        for s in streams:
            s.expect(f'"currentStep":"{step}"'.encode())
        # At a random phase of the watcher's poll: right after a delivery would always land
        # just after a poll, the worst case, every time.
        await asyncio.sleep(random.uniform(0, 0.5))
        t0 = time.perf_counter()
        await asyncio.to_thread(change, step)
        await asyncio.wait_for(asyncio.gather(*(s.arrived.wait() for s in streams)), 60)
        arrivals = [s.arrived_at - t0 for s in streams]
        deliveries.append(max(arrivals))
        per_stream += arrivals
    await asyncio.sleep(0.5)  # the web process writes its GC times every 0.2 s
    gc1 = gc_times(count_file)
    gc_s = [b - a for a, b in zip(gc0["seconds"], gc1["seconds"], strict=True)]
    gc_n = [b - a for a, b in zip(gc0["count"], gc1["count"], strict=True)]
    log(f"  GC during the changes: {gc_n} collections (gen 0, 1, 2), {[round(x, 3) for x in gc_s]} s")
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
    for s in streams:
        s.close()
    result = {
        "n": n,
        "opened_s": opened_in,
        "kb_per_stream": (rss_open - rss_before) / n,
        "rss_before_mb": rss_before / 1024,
        "rss_open_mb": rss_open / 1024,
        "threads": (threads_before, threads_open),
        "xact_per_s": xact_per_s,
        "queries_per_s": queries_per_s,
        "healthz_p50": percentile(healthz, 50),
        "healthz_p99": percentile(healthz, 99),
        "job_p50": percentile(job_get, 50),
        "job_p99": percentile(job_get, 99),
        "delivery_p50": percentile(deliveries, 50),
        "delivery_p99": percentile(deliveries, 99),
        "per_stream_p50": statistics.median(per_stream),
        "gc_s": sum(gc_s),
        "gc_full": gc_n[2],
    }
    log(f"  N={n}: {result}")
    return result


def run_database(kind: str) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-events-{kind}-"))
    count_file = tmp / "queries"
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.settings_events",
        "BENCH_QUERY_COUNT_FILE": str(count_file),
        "BENCH_GC_FILE": f"{count_file}.gc",
        "FITTING_EVENTS_PER_USER": "0",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": POSTGRES_URL if kind in ("postgres", "redis") else "",
        "REDIS_URL": REDIS_URL if kind == "redis" else "",
    }
    app = stack(tmp, **env)
    results = []
    try:
        app.prepare()
        app.start_web()
        with app.client() as client:
            job_id = app.start_job(client)
        # This process changes the job through the services, on the stack's database.
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings.local",
            DATABASE_URL=app.database.url,
            REDIS_URL=env["REDIS_URL"],
            MEDIA_ROOT=str(tmp / "media"),
        )
        import django

        django.setup()
        from django.db import connections

        from fitting.models import FittingResult
        from fitting.services.progress import fitting_claim, fitting_step_started

        job = FittingResult.objects.get(id=job_id)
        assert fitting_claim(job_id=job_id, attempt=job.attempt)
        job = FittingResult.objects.get(id=job_id)

        def change(step: str) -> None:
            try:
                fitting_step_started(job=job, step=step)
            finally:
                connections.close_all()

        for n in SIZES:
            if n != SIZES[0]:  # a fresh web process for each size: memory from the same start
                stop_process(app.processes.pop("web"))
                app.start_web()
            log(f"--- {kind}: {n} streams")
            results.append(asyncio.run(measure(app, n, job_id, change, count_file)))
        from django.db import connections as conns

        conns.close_all()
    finally:
        app.stop()
    return results


def _load(kind: str, r: dict) -> tuple[float, str]:
    """The load judged (PostgreSQL: transactions/s; SQLite: the web process's queries/s), and its text."""
    if kind == "sqlite":
        return r["queries_per_s"], f"{r['queries_per_s'] * WINDOW:.0f} SQL queries in {WINDOW:.0f} s"
    return r["xact_per_s"], (
        f"{r['xact_per_s'] * WINDOW:.0f} DB transactions in {WINDOW:.0f} s "
        f"({r['queries_per_s'] * WINDOW:.0f} queries of the web process)"
    )


def rows_for(kind: str, results: list[dict]) -> list[Row]:
    label = {"postgres": "PostgreSQL (LISTEN/NOTIFY)", "sqlite": "SQLite (batched poll)", "redis": "PG + Redis"}[kind]
    by_n = {r["n"]: r for r in results}
    rows = []
    for r in results:
        n = r["n"]
        load, text = _load(kind, r)
        if 10 in by_n and n != 10:
            base = max(_load(kind, by_n[10])[0], 1 / WINDOW)  # at least one per window
            ratio = max(load, 1 / WINDOW) / base
            rows.append(
                Row(
                    f"events {label} {n} streams: DB load",
                    f"{text}; {ratio:.2f}x of 10 streams",
                    "<= 2x of 10 streams",
                    met(ratio <= TARGET_LOAD_RATIO),
                )
            )
        else:
            rows.append(Row(f"events {label} {n} streams: DB load", text))
        rows.append(
            Row(
                f"events {label} {n} streams: /healthz, job GET",
                f"p50 {r['healthz_p50']:.1f} ms (p99 {r['healthz_p99']:.1f}); "
                f"job p50 {r['job_p50']:.1f} ms (p99 {r['job_p99']:.1f})",
                "/healthz p50 < 50 ms" if n >= 1000 else "—",
                met(r["healthz_p50"] < TARGET_HEALTHZ_P50_MS) if n >= 1000 else "info",
            )
        )
        rows.append(
            Row(
                f"events {label} {n} streams: change to last stream",
                f"p50 {r['delivery_p50'] * 1000:.0f} ms, p99 {r['delivery_p99'] * 1000:.0f} ms "
                f"(per stream p50 {r['per_stream_p50'] * 1000:.0f} ms)",
                "p99 < 1 s",
                met(r["delivery_p99"] < TARGET_DELIVERY_P99_S),
            )
        )
        rows.append(
            Row(
                f"events {label} {n} streams: memory",
                f"{r['kb_per_stream']:.1f} KB/stream (RSS {r['rss_before_mb']:.0f} → {r['rss_open_mb']:.0f} MB; "
                f"threads {r['threads'][0]} → {r['threads'][1]})",
                "< 100 KB per idle stream" if n >= 1000 else "—",
                met(r["kb_per_stream"] < TARGET_KB_PER_STREAM) if n >= 1000 else "info",
            )
        )
    return rows


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * max(SIZES) + 1000  # our ends here, and (inherited) the server's
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    log(f"sizes {SIZES}, databases {DATABASES}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    rows: list[Row] = []
    for kind in DATABASES:
        # Each database in a process of its own: Django is set up once per process.
        if len(DATABASES) > 1:
            import json
            import subprocess

            from bench.common import ROOT, ROWS_MARK

            process = subprocess.run(
                [sys.executable, "-m", "bench.events"],
                cwd=ROOT,
                env={**os.environ, "BENCH_EVENTS_DATABASES": kind},
                stdout=subprocess.PIPE,
                text=True,
                check=False,
            )
            found = [line for line in process.stdout.splitlines() if line.startswith(ROWS_MARK)]
            rows += (
                [Row(**r) for r in json.loads(found[0][len(ROWS_MARK) :])]
                if found
                else [Row(f"events {kind}", "—", "—", f"crashed (exit {process.returncode})")]
            )
        else:
            rows += rows_for(kind, run_database(kind))
    emit(rows)


if __name__ == "__main__":
    main()
