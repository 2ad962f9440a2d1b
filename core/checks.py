"""System checks of the project as a whole, run by ``manage.py check --deploy``.

- core.W001: the default cache is the process's own (local memory) or none (dummy), so the
  request rates, which count in it (``core.throttling``), are counted by each web process
  apart: with the shipped unit's two processes twice the rate passes. A warning, not an
  error: a single process (the clean-install stage, a one-process set-up) counts right.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning

# Cache backends no two processes share.
PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


@register(Tags.caches, deploy=True)
def check_shared_cache(app_configs=None, **kwargs) -> list[CheckWarning]:
    backend = settings.CACHES["default"]["BACKEND"]
    if backend not in PER_PROCESS_CACHES:
        return []
    return [
        CheckWarning(
            f"The default cache is {backend.rsplit('.', 1)[-1]}, which no two processes share: each web "
            "process counts the request rates (FITTING_START_RATE, UPLOAD_RATE, THUMBNAIL_ANON_RATE) on its "
            "own, so with N processes N times each rate passes.",
            hint="Set REDIS_URL (Django's cache then lives in Redis, shared by every process).",
            id="core.W001",
        )
    ]
