"""Retention: photos and result images are deleted once they are older than the TTL.

A job in progress is never touched, nor the photo it uses. Finished jobs older than the
TTL are deleted with their images; a photo is deleted once it is older than the TTL and
no job that is kept still uses it. A file shared by a kept row (a cached result) stays.

Files under the media directories that no row names (left by a crash between writing a
file and committing its row) are deleted once they are older than ``ORPHAN_MIN_AGE``; a
younger one may be a file whose row is being written right now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.files import files_delete_orphans
from fitting.models import FittingResult, Status
from fitting.services.erasure import jobs_delete, photos_delete
from users.models import UserImage

ORPHAN_MIN_AGE = timedelta(days=1)
# Rows (jobs, then photos) deleted in one transaction: its locks are held that long.
RETENTION_BATCH = 200


def retention_purge(*, days: int | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete what is past the TTL, then orphan files; the counts by kind."""
    days = settings.FITTING_RETENTION_DAYS if days is None else days
    now = timezone.now()
    cutoff = now - timedelta(days=days)
    jobs = FittingResult.objects.filter(status__in=Status.terminal(), finished_at__lt=cutoff)
    # user_image_id IS NOT NULL: one NULL in a NOT IN (...) list would keep every photo.
    kept_jobs_photos = (
        FittingResult.objects.exclude(id__in=jobs.values("id")).filter(user_image__isnull=False).values("user_image_id")
    )
    photos = UserImage.objects.filter(created_at__lt=cutoff).exclude(id__in=kept_jobs_photos)
    if dry_run:
        return {
            "jobs": jobs.count(),
            "photos": photos.count(),
            "orphanFiles": files_delete_orphans(older_than=now - ORPHAN_MIN_AGE, dry_run=True),
        }
    # Through the erasure services: the rows locked first, each job's deletion announced (its
    # event streams end), the files deleted after the commit unless another row names them.
    # In batches of RETENTION_BATCH rows, one transaction each, so a backlog never holds its
    # locks for long. The jobs go first: the photos' query then sees only the jobs kept.
    job_count = _delete_in_batches(jobs, jobs_delete)
    photo_count = _delete_in_batches(photos, photos_delete)
    orphans = files_delete_orphans(older_than=now - ORPHAN_MIN_AGE)
    return {"jobs": job_count, "photos": photo_count, "orphanFiles": orphans}


def _delete_in_batches(rows: QuerySet, delete: Callable[[QuerySet], int]) -> int:
    """``delete`` the rows of ``rows``, at most RETENTION_BATCH per transaction, in primary key
    order; how many were deleted.

    Each batch is ``rows`` again (its conditions checked anew under the batch's lock: a job
    reprocessed meanwhile is no longer finished, and stays) restricted to the next keys. A
    batch that fails is rolled back whole and stops the purge; the batches before it stay
    deleted, their files too (deleted after each batch's commit).
    """
    deleted, last = 0, None
    while True:
        page = rows.order_by("pk") if last is None else rows.filter(pk__gt=last).order_by("pk")
        keys = list(page.values_list("pk", flat=True)[:RETENTION_BATCH])
        if not keys:
            return deleted
        with transaction.atomic():
            deleted += delete(rows.filter(pk__in=keys))
        last = keys[-1]
