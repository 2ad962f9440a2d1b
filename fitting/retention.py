"""Retention: photos and result images are deleted once they are older than the TTL.

A job in progress is never touched, nor the photo it uses. Finished jobs older than the
TTL are deleted with their images; a photo is deleted once it is older than the TTL and
no job that is kept still uses it. A file shared by a kept row (a cached result) stays.

Files under the media directories that no row names (left by a crash between writing a
file and committing its row) are deleted once they are older than ``ORPHAN_MIN_AGE``; a
younger one may be a file whose row is being written right now.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.files import files_delete_orphans
from fitting.models import FittingResult, Status
from fitting.services.erasure import jobs_delete, photos_delete
from users.models import UserImage

ORPHAN_MIN_AGE = timedelta(days=1)


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
    with transaction.atomic():
        job_count = jobs_delete(jobs)
        photo_count = photos_delete(photos)
    orphans = files_delete_orphans(older_than=now - ORPHAN_MIN_AGE)
    return {"jobs": job_count, "photos": photo_count, "orphanFiles": orphans}
