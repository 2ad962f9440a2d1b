"""2. API latency and throughput at concurrency 16, against uvicorn on PostgreSQL.

The app's real web process (tests.e2e.Stack: one uvicorn process, ``config.settings.local``
with DEBUG off) on a fresh PostgreSQL database, no qcluster (POST only enqueues). The
throttle is effectively off (``FITTING_START_RATE=100000/second``: DRF keeps one timestamp
per request of the window, so a per-minute rate would carry a list of thousands), the
result cache off. Load comes from ``wrk`` (2 threads, 16 connections, --latency) when it
is installed, else from 16 asyncio tasks with httpx (a heavier client on the same cores,
so the ratios to /healthz matter more than the absolute figures).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import POSTGRES_URL, Row, answers, item_ids, log, main, met, percentile, require, stack

CONCURRENCY = 16
DURATION = int(os.environ.get("BENCH_API_SECONDS", "5"))
REQUESTS_PER_TASK = int(os.environ.get("BENCH_API_REQUESTS", "150"))  # httpx fallback
TARGET_POST_RATIO = 0.40

_LUA = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Authorization"] = "Token {token}"
wrk.headers["Content-Type"] = "application/json"
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  statuses = {{}}
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local counts = {{}}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {{}}
  for status, count in pairs(counts) do
    table.insert(parts, string.format("\\"%d\\": %d", status, count))
  end
  io.write(string.format("BENCHJSON {{\\"p50\\": %f, \\"p99\\": %f, \\"requests\\": %d, \\"seconds\\": %f, \\"non2xx\\": %d, \\"errors\\": %d, \\"statuses\\": {{%s}}}}\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests, summary.duration / 1e6,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", ")))
end
"""


def _wrk(tmp: Path, url: str, method: str, token: str, body: str | None) -> dict:
    script = tmp / f"{method.lower()}.lua"
    script.write_text(_LUA.format(method=method, token=token, body=json.dumps(body) if body else "nil"))
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{DURATION}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=DURATION + 60,
        check=True,
    ).stdout
    result = json.loads(re.search(r"BENCHJSON (.*)", out).group(1))
    result["statuses"] = {int(code): count for code, count in result["statuses"].items()}
    return _rates(result)


def _rates(result: dict) -> dict:
    """Requests/s of all answers, and of the 2xx ones alone (the work done)."""
    result["rps"] = result["requests"] / result["seconds"]
    result["ok"] = sum(count for code, count in result["statuses"].items() if 200 <= code < 300)
    result["ok_rps"] = result["ok"] / result["seconds"]
    return result


def _httpx(url: str, method: str, token: str, body: str | None) -> dict:
    async def main() -> dict:
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:

            async def worker() -> None:
                for _ in range(REQUESTS_PER_TASK):
                    started = time.perf_counter()
                    response = await client.request(method, url, content=body)
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses[response.status_code] += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            seconds = time.perf_counter() - started
        return _rates(
            {
                "p50": percentile(latencies, 50),
                "p99": percentile(latencies, 99),
                "requests": len(latencies),
                "seconds": seconds,
                "non2xx": sum(count for code, count in statuses.items() if code >= 300),
                "errors": 0,
                "statuses": dict(statuses),
            }
        )

    return asyncio.run(main())


CONFIGS = {
    # name: extra environment of the web process (bench.settings_db swaps the connection mode)
    "as shipped": {},
    "persistent connections (CONN_MAX_AGE=60)": {
        "DJANGO_SETTINGS_MODULE": "bench.settings_db",
        "BENCH_DB_MODE": "persistent",
    },
    "no pool, CONN_MAX_AGE=0": {"DJANGO_SETTINGS_MODULE": "bench.settings_db", "BENCH_DB_MODE": "none"},
}


def _open_connections(database: str) -> int:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()[0]


def _measure(env: dict[str, str], tool: str) -> dict[str, dict]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    app = stack(tmp, DATABASE_URL=POSTGRES_URL, DJANGO_DEBUG="false", **env)
    results = {}
    try:
        app.prepare()
        app.start_web()
        with app.client() as client:
            ids = item_ids(client)
            body = json.dumps(
                {
                    "userPhotoUrl": app.photo_url,
                    "items": [{"itemId": ids[c], "category": c} for c in ("top", "bottom", "outer")],
                }
            )
            created = client.post("/api/virtual-fitting", content=body, headers={"Content-Type": "application/json"})
            assert created.status_code == 202, created.text
            job_url = f"{app.base}/api/virtual-fitting/{created.json()['jobId']}"
        for name, url, method, payload in (
            ("GET /healthz", f"{app.base}/healthz", "GET", None),
            ("GET /api/virtual-fitting/<id>", job_url, "GET", None),
            ("POST /api/virtual-fitting", f"{app.base}/api/virtual-fitting", "POST", body),
        ):
            if tool == "wrk":
                r = _wrk(tmp, url, method, app.token, payload)
            else:
                r = _httpx(url, method, app.token, payload)
            results[name] = r
            log(
                f"[api] {tool} {name}: {r['rps']:.0f} req/s ({r['ok_rps']:.0f} 2xx/s), p50 {r['p50']:.1f} ms, "
                f"p99 {r['p99']:.1f} ms, {r['requests']} requests; answers {answers(r['statuses'])}; "
                f"socket errors {r['errors']}"
            )
            # A 429 is a quota or a rate limit standing in for the work: never a figure.
            require(429 not in r["statuses"], f"{name} ({tool}): answers {answers(r['statuses'])}")
            require(r["ok"] > 0, f"{name} ({tool}): no 2xx answer ({answers(r['statuses'])})")
        results["connections"] = _open_connections(app.database.name)
        log(
            f"[api] web log errors: {app.output('web').count(' ERROR ')}; "
            f"PostgreSQL connections the web process holds after the load: {results['connections']}"
        )
    finally:
        app.stop()
    return results


def run() -> list[Row]:
    tool = "wrk" if shutil.which("wrk") else "httpx"
    rows = []
    for config, env in CONFIGS.items():
        log(f"[api] --- {config}")
        results = _measure(env, tool)
        connections = results.pop("connections")
        health = results["GET /healthz"]
        post = results["POST /api/virtual-fitting"]
        ratio = post["ok_rps"] / health["ok_rps"]
        if env:  # a variant: one summary row
            figure = "; ".join(
                f"{name.split()[0]} {name.split()[1].replace('/api/virtual-fitting', '…')}: {r['rps']:.0f} req/s "
                f"p50 {r['p50']:.0f} p99 {r['p99']:.0f} ms (answers {answers(r['statuses'])})"
                for name, r in results.items()
            )
            rows.append(
                Row(
                    f"2. API variant: {config}",
                    f"{figure}; POST {ratio:.0%} of health; {connections} DB connections held after",
                )
            )
            continue
        for name in ("POST /api/virtual-fitting", "GET /api/virtual-fitting/<id>", "GET /healthz"):
            r = results[name]
            share = r["ok_rps"] / health["ok_rps"]
            figure = (
                f"{r['ok_rps']:.0f} 2xx/s of {r['rps']:.0f} req/s ({share:.0%} of health), p50 {r['p50']:.1f} ms "
                f"({r['p50'] / health['p50']:.1f}× health), p99 {r['p99']:.1f} ms ({r['p99'] / health['p99']:.1f}×)"
            )
            if r["errors"]:
                figure += f"; {r['errors']} socket errors"
            if name.startswith("POST"):
                figure += f"; {connections} DB connections held after the load"
                # The target is met only by answers that did the work: every POST a 202.
                verdict = (
                    f"{met(ratio >= TARGET_POST_RATIO and r['ok'] == r['requests'])}; answers {answers(r['statuses'])}"
                )
                rows.append(
                    Row(
                        f"2. API {name}, c={CONCURRENCY}, PostgreSQL ({tool}), {config}",
                        figure,
                        f"≥ {TARGET_POST_RATIO:.0%} of health req/s",
                        verdict,
                    )
                )
            else:
                rows.append(
                    Row(
                        f"2. API {name}, c={CONCURRENCY}, {config}",
                        figure,
                        "—",
                        f"info; answers {answers(r['statuses'])}",
                    )
                )
    return rows


if __name__ == "__main__":
    main(run)
