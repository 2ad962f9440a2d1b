"""The web process's garbage collector (config/asgi.py): what was loaded at start is frozen, and
the first threshold is WEB_GC_THRESHOLD, so a change fanned out to thousands of event streams is
not interrupted by dozens of collections (bench/README.md §8)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import gc, json; import config.asgi; print(json.dumps([gc.get_threshold()[0], gc.get_freeze_count()]))"


def _web_process_gc(**env: str) -> tuple[int, int]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    threshold, frozen = json.loads(result.stdout.strip().splitlines()[-1])
    return threshold, frozen


def test_the_web_process_freezes_its_start_and_collects_young_objects_less_often():
    threshold, frozen = _web_process_gc()
    assert threshold == 50_000
    assert frozen > 10_000  # Django and the apps, out of every later full collection


def test_a_threshold_of_zero_leaves_pythons_default():
    threshold, _ = _web_process_gc(WEB_GC_THRESHOLD="0")
    assert threshold == 700
