"""One place that hears of every change of a job, after the change commits.

The services call ``job_changed_on_commit`` for each write they make to a job, in the web
process and in the workers alike. What follows a change (a webhook delivery, a notice to
the open event streams) hangs off ``job_changed``, never off model signals.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from fitting import watcher
from fitting.models import JobEvent
from fitting.webhooks import webhook_event

logger = logging.getLogger(__name__)


def job_changed(*, job_id: str, event: JobEvent) -> None:
    """Everything that follows a committed change of the job ``job_id``."""
    logger.debug("job %s: %s", job_id, event)
    watcher.publish(job_id)  # to the open event streams of every process
    try:
        webhook_event(job_id=job_id, event=event)
    except Exception:
        # A webhook problem (the broker down, say) never breaks the job: the delivery row, if
        # made, is picked up by the webhook sweep.
        logger.exception("job %s: %s: webhook delivery not enqueued", job_id, event)


def job_changed_on_commit(*, job_id, event: JobEvent) -> None:
    transaction.on_commit(partial(job_changed, job_id=str(job_id), event=event))
