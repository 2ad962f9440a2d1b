"""Retention: photos and result images are deleted once they are older than the TTL.

A job in progress is never touched, nor the photo it uses. Finished jobs older than the
TTL are deleted with their images; a photo is deleted once it is older than the TTL and
no job that is kept still uses it. A file shared by a kept row (a cached result) stays.

Rows are deleted in batches of ``BATCH`` (jobs first, then photos), each in its own
transaction: a large backlog never holds one long lock on thousands of rows, and a failure
leaves the batches before it deleted (with their files) and the rest as they were.

Files under the media directories that no row names (left by a crash between writing a
file and committing its row) are deleted once they are older than ``ORPHAN_MIN_AGE``; a
younger one may be a file whose row is being written right now.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from core.files import files_delete_orphans
from fitting.models import FittingResult, Status
from fitting.services.erasure import jobs_delete, photos_delete
from users.models import UserImage

ORPHAN_MIN_AGE = timedelta(days=1)
BATCH = 200  # rows deleted (and locked) per transaction


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
    # event streams end), the files deleted after each batch's commit unless another row names them.
    job_count = _in_batches(jobs, jobs_delete)
    photo_count = _in_batches(photos, photos_delete)  # once the jobs are gone: their photos are free
    orphans = files_delete_orphans(older_than=now - ORPHAN_MIN_AGE)
    return {"jobs": job_count, "photos": photo_count, "orphanFiles": orphans}


def _in_batches(rows: models.QuerySet, delete) -> int:
    """``delete`` the rows ``BATCH`` at a time, in order of id, one transaction each; how many went.

    Each batch is the queryset again (so a row that stopped matching is left), past the last id
    seen (so a row its service left is not asked for again).
    """
    count, after = 0, None
    while True:
        with transaction.atomic():
            pending = rows.order_by("pk") if after is None else rows.filter(pk__gt=after).order_by("pk")
            ids = list(pending.values_list("pk", flat=True)[:BATCH])
            if not ids:
                return count
            count += delete(rows.filter(pk__in=ids))
        after = ids[-1]
