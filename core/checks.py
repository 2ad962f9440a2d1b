"""System checks of what every app shares.

- core.W001 (``check --deploy``): the default cache is kept per process (local memory, or the
  dummy cache), so the per-user rates (``core.throttling``) are counted per process: with
  several web processes each lets the whole rate through. REDIS_URL gives them one cache.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning

PER_PROCESS_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@register(Tags.security, deploy=True)
def check_shared_rate_counters(app_configs=None, **kwargs) -> list[CheckWarning]:
    backend = settings.CACHES["default"]["BACKEND"]
    if backend not in PER_PROCESS_CACHES:
        return []
    return [
        CheckWarning(
            f"The default cache ({backend.rsplit('.', 1)[-1]}) is kept per process: the per-user rates "
            "(FITTING_START_RATE, UPLOAD_RATE) are counted in each web process, so N processes let "
            "N times the rate through.",
            hint="Set REDIS_URL: every process then counts in the same Redis.",
            id="core.W001",
        )
    ]
