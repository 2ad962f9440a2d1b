"""Per-user request rates that hold when many requests arrive at once."""

from __future__ import annotations

from rest_framework.throttling import UserRateThrottle


def period_start_key(key: str) -> str:
    """The cache key beside a counter ``key`` that holds when its period started (for Retry-After)."""
    return f"{key}_started"


class AtomicUserRateThrottle(UserRateThrottle):
    """DRF's ``UserRateThrottle`` counted with one atomic increment per request.

    DRF's own throttle reads the user's request history, decides, and writes it back, so
    requests that arrive together all read the same history and all pass (80 starts at once
    with 30/minute let 45 through). Here every request adds one to a counter in the cache
    (``incr``, atomic in Redis and in the local-memory cache) and passes only if its own
    number is within the rate: at most ``num_requests`` pass in a period, however many arrive
    together. A period starts with the first request after the previous one ended and lasts
    the rate's duration; Retry-After is what is left of it.

    The counter lives in Django's default cache: Redis (``REDIS_URL``) when several processes
    serve the API, so they share it; the local-memory cache counts per process. A cache whose
    ``incr`` is not atomic (the database and file caches) would let a burst overshoot again.
    When Redis does not answer, its error reaches the API's exception handler (503).
    """

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        return self._count() <= self.num_requests

    def _count(self) -> int:
        """This request's number in the current period, starting a period when none runs."""
        while True:
            self.cache.add(self.key, 0, self.duration)
            try:
                count = self.cache.incr(self.key)
            except ValueError:  # the period ended between add and incr: start the next one
                continue
            if count == 1:
                # This request started the period. touch: Redis' INCR of a key that expired
                # just after Django's existence check creates it anew without an expiry.
                self.cache.touch(self.key, self.duration)
                self.cache.set(self._started_key, self.now, self.duration)
            return count

    @property
    def _started_key(self) -> str:
        return period_start_key(self.key)

    def wait(self) -> float:
        started = self.cache.get(self._started_key)
        if started is None:  # the request that started the period has not recorded it yet
            return float(self.duration)
        return max(started + self.duration - self.now, 1.0)
