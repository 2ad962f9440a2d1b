"""Webhooks of jobs: the services of the webhook part of the fitting app.

A job made with a ``webhookUrl`` gets a POST for each event it subscribed to
(``webhookEvents``; by default the terminal ones). How it goes:

1. ``notify.job_changed_on_commit``, called in the transaction of each change of a job,
   calls ``webhook_record``: if the job subscribed to the event, a ``WebhookDelivery`` row
   freezes the payload — the job as ``GET /api/virtual-fitting/<jobId>`` shows it at that
   moment — with a new ``msg_…`` id, in that same transaction: the row exists if and only if
   the change committed. After the commit ``webhook_enqueue`` enqueues a django-q2 task
   ``fitting.tasks.webhook_deliver``; should that be lost (a crash right after the commit),
   the sweep (3.) enqueues the row once it is due. Nothing is sent in the job's step or in
   a web request.
2. The task (``webhook_deliver``) claims the attempt with a conditional update, POSTs the
   frozen body signed the Standard Webhooks way with the owner's current secret (a new
   ``webhook-timestamp`` per attempt, the same ``webhook-id``), through ``core.outbound``
   (the address is checked again and the connection goes to the checked address), and
   records a ``WebhookAttempt``. 2xx: delivered. Network errors, timeouts, 408, 429 and 5xx:
   tried again after an exponential backoff with jitter (a 429's or 503's ``Retry-After``
   is honoured as a minimum) until ``FITTING_WEBHOOK_RETRY_HOURS``; then failed. Any other
   answer (4xx, 3xx: redirects are not followed) and a refused address: failed at once.
3. Retries are due rows, not timers: ``webhook_sweep`` (a django-q2 schedule, every minute)
   enqueues the pending deliveries whose next attempt is due. The same sweep enqueues again
   a delivery whose queue message was lost or whose worker died (its lock expired): it
   works the same on the ORM and the Redis broker, and a task delivered twice is dropped by
   the claim (it names the attempt number it is for).
"""

from __future__ import annotations

import base64
import logging
import random
import secrets
import time
import uuid
from datetime import datetime, timedelta
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from standardwebhooks import Webhook

from core.outbound import (
    OutboundAddressError,
    OutboundError,
    OutboundUnresolvableError,
    address_check,
    outbound_post,
)
from fitting.errors import InvalidWebhookUrlError
from fitting.models import (
    AttemptOutcome,
    DeliveryStatus,
    FittingResult,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSecret,
)
from fitting.selectors import job_prefetches
from fitting.serializers import JobOutputSerializer

logger = logging.getLogger(__name__)

DELIVER_TASK = "fitting.tasks.webhook_deliver"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
# An enqueued attempt not started this long after (a lost queue message) is enqueued again.
REQUEUE_AFTER = timedelta(minutes=2)
# Backoff between attempts: 1 min, 2, 4, … doubling, at most 6 h; each drawn in [half, full].
RETRY_BASE = timedelta(minutes=1)
RETRY_CAP = timedelta(hours=6)
# The sweep gives up a pending delivery this long past its retry_until (its worker kept dying).
EXPIRY_GRACE = timedelta(hours=1)
# What is kept of a receiver's answer to a failed attempt, for staff.
ANSWER_KEPT = 1024
RETRIED_STATUSES = {408, 429}


# --- the URL and the secret ----------------------------------------------------------------
def webhook_url_check(url: str) -> None:
    """Refuse (400 INVALID_WEBHOOK_URL, field webhookUrl) a URL that may not be called."""
    try:
        address_check(url, allow_private=settings.FITTING_WEBHOOK_ALLOW_PRIVATE)
    except OutboundAddressError as exc:
        logger.info("webhookUrl refused: %s", exc)
        raise InvalidWebhookUrlError(field="webhookUrl") from exc


def _new_secret() -> str:
    # 32 random bytes, base64: what standardwebhooks.Webhook(secret) decodes after the prefix.
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_secret_get(*, user: AbstractBaseUser) -> str:
    """The user's signing secret, made on first use."""
    row, _created = WebhookSecret.objects.get_or_create(user=user, defaults={"secret": _new_secret()})
    return row.secret


def webhook_secret_rotate(*, user: AbstractBaseUser) -> str:
    """A new signing secret for the user; the old one signs nothing from now on."""
    secret = _new_secret()
    WebhookSecret.objects.update_or_create(user=user, defaults={"secret": secret, "rotated_at": timezone.now()})
    return secret


# --- an event of a job: freeze the payload, enqueue the delivery ---------------------------
class _Origin:
    """Stands in for the request in the job serializer: absolute URLs on the job's own origin."""

    def __init__(self, origin: str):
        self.origin = origin

    def build_absolute_uri(self, location: str) -> str:
        return urljoin(self.origin + "/", location)


def webhook_payload(*, job: FittingResult, event: str, at: datetime) -> str:
    """``{"type", "timestamp", "data"}``: data is the job exactly as GET shows it to its owner."""
    request = _Origin(job.request_origin) if job.request_origin else None
    body = {
        "type": event,
        "timestamp": serializers.DateTimeField().to_representation(at),
        "data": JobOutputSerializer(job, context={"request": request}).data,
    }
    return JSONRenderer().render(body).decode()


def webhook_record(*, job_id: str, event: str) -> WebhookDelivery | None:
    """A delivery of ``event`` if the job subscribed to it, written in the caller's transaction
    (the change's own); ``webhook_enqueue`` it once that commits."""
    if event not in WebhookEvent.values:
        return None
    subscription = FittingResult.objects.filter(id=job_id).values("webhook_url", "webhook_events").first()
    if not subscription or not subscription["webhook_url"] or event not in subscription["webhook_events"]:
        return None
    job = FittingResult.objects.filter(id=job_id).select_related("rating").prefetch_related(*job_prefetches()).first()
    if job is None:  # deleted meanwhile
        return None
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(
        job=job,
        event=event,
        webhook_id=f"msg_{uuid.uuid4().hex}",
        url=job.webhook_url,
        payload=webhook_payload(job=job, event=event, at=now),
        next_attempt_at=now + REQUEUE_AFTER,  # the sweep's fallback should this message be lost
        retry_until=now + timedelta(hours=settings.FITTING_WEBHOOK_RETRY_HOURS),
    )
    return delivery


def webhook_enqueue(*, delivery_id: int) -> None:
    """Enqueue the first attempt of a committed delivery."""
    _enqueue(delivery_id=delivery_id, number=1)


def _enqueue(*, delivery_id: int, number: int) -> None:
    # By dotted path: the web process never imports the worker side.
    async_task(DELIVER_TASK, delivery_id, number, task_name=f"webhook-{delivery_id}-{number}")


# --- one attempt ----------------------------------------------------------------------------
def _lock_time() -> timedelta:
    return timedelta(seconds=settings.FITTING_WEBHOOK_CONNECT_TIMEOUT + settings.FITTING_WEBHOOK_TIMEOUT + 30)


def _unlocked(now: datetime) -> Q:
    return Q(locked_until__isnull=True) | Q(locked_until__lt=now)


def webhook_signed_headers(*, webhook_id: str, payload: str, secret: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "virtual-fitting-webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=webhook_id, timestamp=at, data=payload),
    }


def _answer_outcome(status: int) -> str:
    if 200 <= status < 300:
        return AttemptOutcome.DELIVERED
    if status in RETRIED_STATUSES or status >= 500:
        return AttemptOutcome.RETRY
    return AttemptOutcome.FAILED


def webhook_backoff(number: int, retry_after: str | None = None) -> timedelta:
    """The wait after failed attempt ``number``: exponential, capped, with jitter ("equal
    jitter": between half and all of it); at least a receiver's ``Retry-After`` seconds."""
    full = min(RETRY_CAP, RETRY_BASE * 2 ** min(number - 1, 20))
    delay = full / 2 + (full / 2) * random.random()  # jitter, not a secret
    if retry_after and retry_after.strip().isdigit():
        delay = max(delay, min(RETRY_CAP, timedelta(seconds=int(retry_after.strip()))))
    return delay


def webhook_deliver(*, delivery_id: int, number: int) -> str:
    """Make attempt ``number`` of a delivery; its outcome, or "skipped" when it is not this
    task's to make (made already, being made, or the delivery ended or was deleted)."""
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(id=delivery_id, status=DeliveryStatus.PENDING, attempt_count=number - 1)
        .filter(_unlocked(now))
        .update(attempt_count=number, locked_until=now + _lock_time())
    )
    if not claimed:
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("job__owner").filter(id=delivery_id).first()
    if delivery is None:  # the job was deleted meanwhile
        return "skipped"
    secret = webhook_secret_get(user=delivery.job.owner)
    started_at = timezone.now()
    started = time.monotonic()
    status_code, error, retry_after = None, "", None
    try:
        answer = outbound_post(
            delivery.url,
            allow_private=settings.FITTING_WEBHOOK_ALLOW_PRIVATE,
            timeout=(settings.FITTING_WEBHOOK_CONNECT_TIMEOUT, settings.FITTING_WEBHOOK_TIMEOUT),
            data=delivery.payload.encode(),
            headers=webhook_signed_headers(
                webhook_id=delivery.webhook_id, payload=delivery.payload, secret=secret, at=started_at
            ),
            max_bytes=ANSWER_KEPT,
            truncate=True,
        )
    except OutboundUnresolvableError as exc:  # DNS may come back
        outcome, error = AttemptOutcome.RETRY, str(exc)
    except OutboundAddressError as exc:
        outcome, error = AttemptOutcome.REFUSED, str(exc)
    except OutboundError as exc:
        outcome, error = AttemptOutcome.RETRY, str(exc)
    else:
        status_code = answer.status
        outcome = _answer_outcome(answer.status)
        retry_after = answer.headers.get("Retry-After")
        if outcome != AttemptOutcome.DELIVERED:
            error = answer.body.decode("utf-8", "replace")
    duration_ms = round((time.monotonic() - started) * 1000)
    next_attempt_at = None
    if outcome == AttemptOutcome.RETRY:
        next_attempt_at = timezone.now() + webhook_backoff(number, retry_after)
        if next_attempt_at > delivery.retry_until:
            outcome = AttemptOutcome.EXPIRED
    _attempt_record(
        delivery=delivery,
        number=number,
        started_at=started_at,
        duration_ms=duration_ms,
        status_code=status_code,
        error=error,
        outcome=outcome,
        next_attempt_at=next_attempt_at,
    )
    log = logger.info if outcome == AttemptOutcome.DELIVERED else logger.warning
    log("webhook %s (job %s, %s) attempt %s: %s %s", delivery.webhook_id, delivery.job_id, delivery.event, number,
        outcome, status_code or error[:200])  # fmt: skip
    return outcome


@transaction.atomic
def _attempt_record(
    *,
    delivery: WebhookDelivery,
    number: int,
    started_at: datetime,
    duration_ms: int,
    status_code: int | None,
    error: str,
    outcome: str,
    next_attempt_at: datetime | None,
) -> None:
    if not WebhookDelivery.objects.select_for_update().filter(id=delivery.id).exists():
        return  # the job (and its deliveries) was deleted while the attempt ran
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=number,
        started_at=started_at,
        duration_ms=duration_ms,
        status_code=status_code,
        error=error[: ANSWER_KEPT * 2],
        outcome=outcome,
    )
    now = timezone.now()
    if outcome == AttemptOutcome.RETRY:
        change = {"next_attempt_at": next_attempt_at}
    else:
        status = DeliveryStatus.DELIVERED if outcome == AttemptOutcome.DELIVERED else DeliveryStatus.FAILED
        change = {"status": status, "next_attempt_at": None, "finished_at": now}
    # Only while the attempt is still ours (a redelivery meanwhile starts its own).
    WebhookDelivery.objects.filter(id=delivery.id, attempt_count=number, status=DeliveryStatus.PENDING).update(
        locked_until=None, **change
    )


# --- the sweep and redelivery ----------------------------------------------------------------
def webhook_sweep(*, limit: int = 500) -> dict[str, int]:
    """Enqueue the pending deliveries whose next attempt is due (retries, lost messages, dead
    workers); give up those long past their retry window."""
    now = timezone.now()
    expired = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, retry_until__lt=now - EXPIRY_GRACE).filter(
        _unlocked(now)
    )
    given_up = expired.update(status=DeliveryStatus.FAILED, next_attempt_at=None, finished_at=now, locked_until=None)
    due = (
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(_unlocked(now))
        .order_by("next_attempt_at")
        .values_list("id", "attempt_count", "next_attempt_at")[:limit]
    )
    enqueued = 0
    for delivery_id, count, due_at in due:
        # Moved on first: two sweeps at once enqueue it once; a lost message comes back later.
        if WebhookDelivery.objects.filter(id=delivery_id, next_attempt_at=due_at, status=DeliveryStatus.PENDING).update(
            next_attempt_at=now + REQUEUE_AFTER
        ):
            _enqueue(delivery_id=delivery_id, number=count + 1)
            enqueued += 1
    if given_up:
        logger.warning("webhook sweep: %s delivery(ies) given up", given_up)
    return {"enqueued": enqueued, "givenUp": given_up}


def webhook_redeliver(*, delivery: WebhookDelivery) -> bool:
    """Send a delivery again now (staff): the same payload and ``webhook-id`` — the receiver
    may already have it, and the id is how it tells — as a new attempt, retried as usual for
    another retry window. False while an attempt of it is running."""
    now = timezone.now()
    with transaction.atomic():
        updated = (
            WebhookDelivery.objects.filter(id=delivery.id)
            .filter(_unlocked(now))
            .update(
                status=DeliveryStatus.PENDING,
                next_attempt_at=now + REQUEUE_AFTER,
                retry_until=now + timedelta(hours=settings.FITTING_WEBHOOK_RETRY_HOURS),
                finished_at=None,
            )
        )
        if not updated:
            return False
        delivery.refresh_from_db()
        number = delivery.attempt_count + 1
        transaction.on_commit(lambda: _enqueue(delivery_id=delivery.id, number=number))
    return True
