"""``python -m bench [name …]``: run the benchmarks, each in its own process; print one table.

Details (breakdowns, query lists, memory) go to stderr as each benchmark runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.common import FAILED_MARK, ROOT, ROWS_MARK, Row

BENCHMARKS = ["pipeline", "api", "queries", "capacity", "pickup", "cache", "memory", "metrics", "events", "quality"]


def _run(name: str) -> list[Row]:
    started = time.monotonic()
    print(f"--- bench.{name}", file=sys.stderr, flush=True)
    process = subprocess.run(
        [sys.executable, "-m", f"bench.{name}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        timeout=900,
        check=False,
    )
    print(f"--- bench.{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    for line in process.stdout.splitlines():
        if line.startswith(ROWS_MARK):
            return [Row(**row) for row in json.loads(line[len(ROWS_MARK) :])]
        if line.startswith(FAILED_MARK):
            return [
                Row(f"bench.{name}", "— (no figure: the work was not done)", "—", "FAILED: " + line[len(FAILED_MARK) :])
            ]
    return [Row(f"bench.{name}", "—", "—", f"FAILED: crashed (exit {process.returncode}); see stderr")]


def _table(rows: list[Row]) -> str:
    header = ("benchmark", "figure", "target", "met?")
    cells = [header] + [(r.benchmark, r.figure, r.target, r.met) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    line = lambda c: "| " + " | ".join(v.ljust(w) for v, w in zip(c, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def main() -> None:
    names = sys.argv[1:] or BENCHMARKS
    rows: list[Row] = []
    for name in names:
        rows += _run(name)
    print(_table(rows))
    failed = [row.benchmark for row in rows if row.met.startswith("FAILED")]
    if failed:
        print(f"{len(failed)} benchmark(s) failed: " + ", ".join(failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
