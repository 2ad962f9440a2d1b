"""The local settings, plus a count of the SQL queries the process runs (bench/events.py).

With ``BENCH_QUERY_COUNT_FILE`` set, every database connection of the process counts its
queries (an execute wrapper) and a thread writes the running total to that file every 0.2 s:
the benchmark reads it before and after a window to get the web process's queries/s, on
SQLite (which has no server-side statistics) and on PostgreSQL alike.
"""

import faulthandler
import os
import signal
import threading
import time
from pathlib import Path

from config.settings.local import *  # noqa: F403

# `kill -USR1 <pid>` writes every thread's stack to the web log (what holds a thread?).
faulthandler.register(signal.SIGUSR1, all_threads=True)

_COUNT_FILE = os.environ.get("BENCH_QUERY_COUNT_FILE")
if _COUNT_FILE:
    from django.db.backends.signals import connection_created

    _queries = [0]

    def _count(execute, sql, params, many, context):
        _queries[0] += 1
        return execute(sql, params, many, context)

    def _wrap(sender, connection, **kwargs):
        if _count not in connection.execute_wrappers:  # a wrapper object reconnects many times
            connection.execute_wrappers.append(_count)

    def _write() -> None:
        while True:
            Path(_COUNT_FILE + ".tmp").write_text(str(_queries[0]))
            os.replace(_COUNT_FILE + ".tmp", _COUNT_FILE)  # never read half written
            time.sleep(0.2)

    connection_created.connect(_wrap, weak=False)
    threading.Thread(target=_write, daemon=True, name="bench-query-count").start()

# Time spent in the garbage collector, by generation, written beside the query count (the
# event benchmark reads it around the changes: a full collection of a heap holding thousands of
# streams is a pause every stream waits through).
_GC_FILE = os.environ.get("BENCH_GC_FILE")
if _GC_FILE:
    import gc

    _gc = {"started": 0.0, "seconds": [0.0, 0.0, 0.0], "count": [0, 0, 0]}

    def _gc_timer(phase, info):
        if phase == "start":
            _gc["started"] = time.perf_counter()
        else:
            _gc["seconds"][info["generation"]] += time.perf_counter() - _gc["started"]
            _gc["count"][info["generation"]] += 1

    gc.callbacks.append(_gc_timer)

    def _write_gc() -> None:
        while True:
            Path(_GC_FILE + ".tmp").write_text(json.dumps(_gc))
            os.replace(_GC_FILE + ".tmp", _GC_FILE)
            time.sleep(0.2)

    import json

    threading.Thread(target=_write_gc, daemon=True, name="bench-gc-time").start()
