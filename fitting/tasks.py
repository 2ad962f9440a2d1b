"""django-q2 tasks: thin. They take ids, never model instances, call one service, and are safe to run twice."""

from __future__ import annotations

from django.core.cache import cache

from fitting import webhooks
from fitting.retention import retention_purge as purge
from fitting.services.lifecycle import fitting_requeue_lost, fitting_sweep_expired

SWEEP_LOCK = "fitting:sweep-lock"


def run_fitting(job_id: str, attempt: int) -> None:
    from fitting.pipeline import run_job  # the pipeline (and its engine) load in workers only

    run_job(job_id=job_id, attempt=attempt)


def sweep_fittings() -> dict[str, int]:
    """Every minute: end jobs whose worker died; enqueue again jobs whose queue message was lost.

    Every write of the services is a conditional update, so two sweeps at once would still be
    correct; the lock only saves the duplicate work.
    """
    if not cache.add(SWEEP_LOCK, "1", timeout=50):
        return {"timedOut": 0, "requeued": 0, "skipped": 1}
    try:
        return {"timedOut": fitting_sweep_expired(), "requeued": fitting_requeue_lost(), "skipped": 0}
    finally:
        cache.delete(SWEEP_LOCK)


def retention_purge() -> dict[str, int]:
    """Hourly: delete what is past FITTING_RETENTION_DAYS (fitting.retention.retention_purge)."""
    return purge()


def webhook_deliver(delivery_id: int, number: int) -> str:
    """Attempt ``number`` of a webhook delivery (fitting.webhooks.webhook_deliver)."""
    return webhooks.webhook_deliver(delivery_id=delivery_id, number=number)


def webhook_sweep() -> dict[str, int]:
    """Every minute: enqueue the webhook deliveries whose next attempt is due."""
    return webhooks.webhook_sweep()
