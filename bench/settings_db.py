"""The local settings with another PostgreSQL connection mode, chosen by BENCH_DB_MODE.

Used by the benchmarks to compare what the app ships with alternatives:
``persistent`` (CONN_MAX_AGE=60, one connection per thread kept open), ``none`` (a new
connection per request, CONN_MAX_AGE=0) and ``pool`` (psycopg's pool, max 16).
"""

import os

from config.settings.local import *  # noqa: F403

_MODE = os.environ.get("BENCH_DB_MODE", "none")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    _db = DATABASES["default"]  # noqa: F405
    _db["OPTIONS"] = {k: v for k, v in _db.get("OPTIONS", {}).items() if k != "pool"}
    _db["CONN_MAX_AGE"] = 60 if _MODE == "persistent" else 0
    _db["CONN_HEALTH_CHECKS"] = _MODE == "persistent"
    if _MODE == "pool":
        _db["OPTIONS"]["pool"] = {"min_size": 2, "max_size": 16, "timeout": 10}
