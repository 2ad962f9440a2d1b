"""Erasure: a job, a photo, a user, with their files; the retention deletes through here too."""

from __future__ import annotations

import logging
from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet

from core.files import files_delete_unreferenced
from core.logcontext import log_context
from fitting import notify
from fitting.errors import PhotoInUseError
from fitting.models import FittingResult, FittingResultImage, JobEvent, Status, StepAttempt
from users.models import UserImage

logger = logging.getLogger(__name__)


def rows_lock(rows: QuerySet) -> bool:
    """Lock ``rows`` until the transaction ends (PostgreSQL; SQLite writers are serialised
    anyway); False when there are none."""
    return bool(list(rows.select_for_update().values_list("pk", flat=True)))


def jobs_delete(jobs: QuerySet[FittingResult]) -> int:
    """Delete jobs with their rows; their files go after the commit unless another row names them.

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


@transaction.atomic
def user_delete(*, user: AbstractBaseUser) -> None:
    """Erase a user: jobs (running ones too), photos, their files, API token, sessions, account.

    A file another user's row still names (a shared cached result) stays for that user.
    Here in fitting, not in users, because it deletes the user's jobs first.
    """
    jobs_delete(FittingResult.objects.filter(owner=user))
    photos_delete(UserImage.objects.filter(owner=user))
    _sessions_delete(user)
    user.delete()  # the API token and the admin's log entries of this user go with it (CASCADE)


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
