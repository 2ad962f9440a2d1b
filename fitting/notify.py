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

logger = logging.getLogger(__name__)

# The event types; the webhook ones are the job's public event names.
STEP_STARTED = "fitting.step_started"
STEP_FINISHED = "fitting.step_finished"
COMPLETED = "fitting.completed"
FAILED = "fitting.failed"
TIMEOUT = "fitting.timeout"
CANCELED = "fitting.canceled"
REQUEUED = "fitting.requeued"  # reprocessed: processing again, as a new attempt
DELETED = "fitting.deleted"


def job_changed(*, job_id: str, event: str) -> None:
    """Everything that follows a committed change of the job ``job_id``."""
    logger.debug("job %s: %s", job_id, event)
    watcher.publish(job_id)  # to the open event streams of every process


def job_changed_on_commit(*, job_id, event: str) -> None:
    transaction.on_commit(partial(job_changed, job_id=str(job_id), event=event))
