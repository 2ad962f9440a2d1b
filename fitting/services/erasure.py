"""Erasure: a job, a photo, a user, with their files; the retention deletes through here too."""

from __future__ import annotations

import logging
from importlib import import_module

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import router, transaction
from django.db.models import Q, QuerySet
from django.db.models.deletion import Collector
from django_q.models import OrmQ, Task
from rest_framework.throttling import UserRateThrottle

from core.files import files_delete_unreferenced
from core.logcontext import log_context
from core.throttling import period_start_key
from fitting import notify
from fitting.errors import PhotoInUseError
from fitting.models import FittingResult, FittingResultImage, JobEvent, Status, StepAttempt, WebhookDelivery
from users.models import UserImage

logger = logging.getLogger(__name__)


def rows_lock(rows: QuerySet) -> bool:
    """Lock ``rows`` until the transaction ends (PostgreSQL; SQLite writers are serialised
    anyway); False when there are none."""
    return bool(list(rows.select_for_update().values_list("pk", flat=True)))


def jobs_delete(jobs: QuerySet[FittingResult]) -> int:
    """Delete jobs with their rows (garments, images, the owner's rating, webhook deliveries); their
    files go after the commit unless another row names them.

    Each job's deletion is announced (its event streams end). Returns how many were deleted.
    """
    # Locked first: a worker's step write in flight commits before the file names are read,
    # and a later one finds no row (JobSuperseded) and deletes the file it wrote.
    rows_lock(jobs)
    names = list(FittingResultImage.objects.filter(job__in=jobs).values_list("image", flat=True))
    names += StepAttempt.objects.filter(job__in=jobs).values_list("image", flat=True)  # the gate's attempts
    job_ids = list(jobs.values_list("id", flat=True))
    for job_id in job_ids:
        notify.job_changed_on_commit(job_id=job_id, event=JobEvent.DELETED)
    jobs.delete()
    files_delete_unreferenced(names)
    return len(job_ids)


def photos_delete(photos: QuerySet[UserImage]) -> int:
    """Delete photos; their files go after the commit unless another row names them. How many."""
    rows_lock(photos)
    names = list(photos.values_list("image", flat=True))
    count = len(names)
    photos.delete()
    files_delete_unreferenced(names)
    return count


@transaction.atomic
def fitting_delete(*, job: FittingResult) -> None:
    """Delete a job, even one still processing, with its images unless another job shares a file."""
    with log_context(job_id=str(job.id), attempt=job.attempt, user_id=job.owner_id):
        jobs_delete(FittingResult.objects.filter(id=job.id))
        logger.info("job %s: deleted", job.id)


@transaction.atomic
def photo_delete(*, photo: UserImage) -> None:
    """Delete a photo and its file; refused (PHOTO_IN_USE) while a job using it is processing.

    Finished jobs that used it stay in their owner's history, without the photo.
    """
    if not rows_lock(UserImage.objects.filter(id=photo.id)):
        return  # already gone
    if FittingResult.objects.filter(user_image_id=photo.id, status=Status.PROCESSING).exists():
        raise PhotoInUseError()
    name = photo.image.name
    UserImage.objects.filter(id=photo.id).delete()
    files_delete_unreferenced([name])


# The per-user request rates (core.throttling) whose counters are keyed by the user's id.
USER_THROTTLE_SCOPES = ("fitting_start", "photo_upload")


@transaction.atomic
def user_delete(*, user: AbstractBaseUser) -> None:
    """Erase a user: jobs (running ones too), photos, their files, API tokens, sessions, account,
    and the traces they left: login attempts under their username, the admin's log entries
    about them and their objects, the queue's task rows of their jobs, their rate counters.

    A file another user's row still names (a shared cached result) stays for that user. The
    usage ledger keeps their figures without them (``UsageDay.user`` is set NULL).
    Here in fitting, not in users, because it deletes the user's jobs first.
    """
    logged_about = _objects_of(user)  # before anything is deleted
    task_names = _task_names(user)
    jobs_delete(FittingResult.objects.filter(owner=user))
    photos_delete(UserImage.objects.filter(owner=user))
    _sessions_delete(user)
    username, user_id = user.get_username(), user.pk
    user.delete()  # the API tokens (knox) and the admin's log entries BY this user go with it (CASCADE)
    LogEntry.objects.filter(logged_about).delete()
    _tasks_delete(task_names)
    for model in (AccessAttempt, AccessFailureLog, AccessLog):
        model.objects.filter(username=username).delete()
    # The cache is no part of the transaction: cleared once the erasure is sure to stand.
    transaction.on_commit(lambda: _rate_counters_delete(user_id), robust=True)


def _objects_of(user: AbstractBaseUser) -> Q:
    """The admin log entries about ``user`` and every row that is deleted with them."""
    collector = Collector(using=router.db_for_write(type(user)), origin=user)
    collector.collect([user])
    ids: dict[type, set[str]] = {}
    for model, instances in collector.data.items():
        ids.setdefault(model, set()).update(str(obj.pk) for obj in instances)
    for rows in collector.fast_deletes:
        ids.setdefault(rows.model, set()).update(str(pk) for pk in rows.values_list("pk", flat=True))
    about = Q(pk__in=[])
    for model, pks in ids.items():
        if model is not LogEntry and pks:
            about |= Q(content_type=ContentType.objects.get_for_model(model), object_id__in=pks)
    return about


def _task_names(user: AbstractBaseUser) -> set[str]:
    """The names the queue's tasks of the user's jobs and webhook deliveries were given
    (``fitting.services.start.fitting_enqueue``, ``fitting.webhooks._enqueue``)."""
    names = set()
    for job_id, attempts in FittingResult.objects.filter(owner=user).values_list("id", "attempt"):
        names.update(f"fitting-{job_id}-{number}" for number in range(1, attempts + 1))
    deliveries = WebhookDelivery.objects.filter(job__owner=user).values_list("id", "attempt_count")
    for delivery_id, count in deliveries:
        names.update(f"webhook-{delivery_id}-{number}" for number in range(1, count + 2))
    return names


def _tasks_delete(names: set[str]) -> None:
    """The queue's rows of these tasks: results (done, failed) and, on the ORM broker, queued ones."""
    if not names:
        return
    Task.objects.filter(name__in=names).delete()  # Success and Failure are views of these rows
    queued = [row.pk for row in OrmQ.objects.all() if row.task.get("name") in names]
    OrmQ.objects.filter(pk__in=queued).delete()


def _rate_counters_delete(user_id) -> None:
    keys = []
    for scope in USER_THROTTLE_SCOPES:
        key = UserRateThrottle.cache_format % {"scope": scope, "ident": user_id}
        keys += [key, period_start_key(key)]  # core.throttling.AtomicUserRateThrottle's period start
    cache.delete_many(keys)


def _sessions_delete(user: AbstractBaseUser) -> None:
    """Delete the user's stored sessions.

    Only database-backed session engines can be searched; with the others a session of a
    deleted user logs nobody in, since its user can no longer be loaded.
    """
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store_class, "get_model_class"):
        return
    user_id = str(user.pk)
    for session in store_class.get_model_class().objects.iterator():
        if session.get_decoded().get(SESSION_KEY) == user_id:
            store_class(session_key=session.session_key).delete()
