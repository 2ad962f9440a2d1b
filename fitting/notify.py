"""One place that hears of every change of a job, after the change commits.

The services call ``job_changed_on_commit`` for each write they make to a job, in the web
process and in the workers alike. What follows a change (a webhook delivery, a notice to
the open event streams) hangs off ``job_changed``, never off model signals.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

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
    # Imported here: both import the models, which use the names above.
    from fitting import watcher
    from fitting.webhooks import webhook_event

    logger.debug("job %s: %s", job_id, event)
    watcher.publish(job_id)  # to the open event streams of every process
    try:
        webhook_event(job_id=job_id, event=event)
    except Exception:
        # A webhook problem (the broker down, say) never breaks the job: the delivery row, if
        # made, is picked up by the webhook sweep.
        logger.exception("job %s: %s: webhook delivery not enqueued", job_id, event)


def job_changed_on_commit(*, job_id, event: str) -> None:
    transaction.on_commit(partial(job_changed, job_id=str(job_id), event=event))
