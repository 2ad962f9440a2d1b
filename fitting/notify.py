"""One place that hears of every change of a job, in the transaction that makes it.

The services call ``job_changed_on_commit`` for each write they make to a job, in the web
process and in the workers alike, inside the write's transaction. The webhook delivery the
change owes is written there and then, so it commits (or rolls back) with the change; what
follows the commit (a notice to the open event streams, the delivery's task) hangs off
``job_changed``, never off model signals.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction

from fitting import watcher
from fitting.models import JobEvent
from fitting.webhooks import webhook_enqueue, webhook_record

logger = logging.getLogger(__name__)


def job_changed(*, job_id: str, event: JobEvent, delivery_id: int | None = None) -> None:
    """Everything that follows a committed change of the job ``job_id``."""
    logger.debug("job %s: %s", job_id, event)
    watcher.publish(job_id)  # to the open event streams of every process
    if delivery_id is None:
        return
    try:
        webhook_enqueue(delivery_id=delivery_id)
    except Exception:
        # The broker down, say: the committed delivery row is picked up by the webhook sweep.
        logger.exception("job %s: %s: webhook delivery not enqueued", job_id, event)


def job_changed_on_commit(*, job_id, event: JobEvent) -> None:
    """Announce a change of the job: call it inside the change's transaction, after the write."""
    delivery_id = _delivery_record(job_id=str(job_id), event=event)
    transaction.on_commit(partial(job_changed, job_id=str(job_id), event=event, delivery_id=delivery_id))


def _delivery_record(*, job_id: str, event: JobEvent) -> int | None:
    """The change's webhook delivery, if it owes one; a webhook problem never undoes the job's change."""
    try:
        with transaction.atomic():  # a savepoint: a failed insert leaves the change's transaction usable
            delivery = webhook_record(job_id=job_id, event=event)
    except Exception:
        logger.exception("job %s: %s: webhook delivery not recorded", job_id, event)
        return None
    return delivery.id if delivery else None
