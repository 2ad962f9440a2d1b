import logging
import os
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from fitting import retention, tasks
from fitting.models import FittingResult, FittingResultImage, JobEvent, Status
from fitting.retention import retention_purge
from tests.factories import make_job, make_photo, run_now, start_job
from users.models import UserImage


def finished_job(user, photo, item):
    return run_now(start_job(user, photo, item))


def age(model, days, **filters):
    field = "finished_at" if model is FittingResult else "created_at"
    model.objects.filter(**filters).update(**{field: timezone.now() - timedelta(days=days)})


def test_old_jobs_and_photos_go_and_their_files_with_them(
    user, catalogue, settings, django_capture_on_commit_callbacks
):
    settings.FITTING_RETENTION_DAYS = 30
    old_photo, new_photo = make_photo(user), make_photo(user)
    old_job = finished_job(user, old_photo, catalogue["top"])
    new_job = finished_job(user, new_photo, catalogue["top"])
    old_files = [row.image.path for row in old_job.images.all()] + [old_photo.image.path]
    age(FittingResult, 31, id=old_job.id)
    age(UserImage, 31, id__in=[old_photo.id, new_photo.id])
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # files go once the deletion commits
        call_command("retention_purge", stdout=out)
    assert "deleted 1 job(s) and 1 photo(s)" in out.getvalue()
    assert list(FittingResult.objects.values_list("id", flat=True)) == [new_job.id]
    assert list(UserImage.objects.values_list("id", flat=True)) == [new_photo.id]  # still used by a kept job
    assert not any(os.path.exists(path) for path in old_files)
    assert all(os.path.exists(row.image.path) for row in FittingResultImage.objects.all())


def test_the_retention_deletes_through_the_erasure_service_and_announces_each_job(
    user, photo, catalogue, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG, logger="fitting.notify")
    job = finished_job(user, photo, catalogue["top"])
    age(FittingResult, 100, id=job.id)
    with django_capture_on_commit_callbacks(execute=True):
        assert retention_purge(days=30)["jobs"] == 1
    # As fitting_delete does: the job's event streams and the other processes hear of it.
    assert f"job {job.id}: {JobEvent.DELETED}" in caplog.messages


def test_jobs_in_progress_are_never_touched(user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    age(UserImage, 400, id=photo.id)
    FittingResult.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(days=400))
    call_command("retention_purge", stdout=StringIO())
    assert FittingResult.objects.filter(id=job.id).exists()
    assert UserImage.objects.filter(id=photo.id).exists()


def test_dry_run_deletes_nothing(user, photo, catalogue):
    job = finished_job(user, photo, catalogue["top"])
    age(FittingResult, 100, id=job.id)
    out = StringIO()
    call_command("retention_purge", "--dry-run", stdout=out)
    assert "would delete 1 job(s) and 0 photo(s)" in out.getvalue()
    assert FittingResult.objects.count() == 1


def test_shared_files_of_cached_results_stay(user, photo, catalogue, settings, django_capture_on_commit_callbacks):
    settings.FITTING_RESULT_CACHE = True
    first = finished_job(user, photo, catalogue["top"])
    second = start_job(user, photo, catalogue["top"])
    assert second.cached
    age(FittingResult, 100, id=first.id)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("retention_purge", stdout=StringIO())
    assert all(os.path.exists(row.image.path) for row in FittingResultImage.objects.filter(job=second))


def test_an_old_photo_goes_even_when_a_kept_job_has_lost_its_photo(
    user, catalogue, settings, django_capture_on_commit_callbacks
):
    # A job whose photo its owner deleted has user_image NULL: it must not keep every photo.
    settings.FITTING_RETENTION_DAYS = 30
    gone, old = make_photo(user), make_photo(user)
    kept = finished_job(user, gone, catalogue["top"])
    FittingResult.objects.filter(id=kept.id).update(user_image=None)
    age(UserImage, 31, id=old.id)
    with django_capture_on_commit_callbacks(execute=True):
        counts = retention_purge()
    assert counts["photos"] == 1
    assert not UserImage.objects.filter(id=old.id).exists() and not os.path.exists(old.image.path)
    assert FittingResult.objects.filter(id=kept.id).exists()


def write_file(media_root, name: str, *, days_old: float) -> str:
    path = media_root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 leftover")
    moment = (timezone.now() - timedelta(days=days_old)).timestamp()
    os.utime(path, (moment, moment))
    return str(path)


def test_old_files_no_row_names_are_removed_young_or_named_ones_stay(user, photo, catalogue, media_root):
    job = finished_job(user, photo, catalogue["top"])
    named = [photo.image.path, catalogue["top"].image.path, *(row.image.path for row in job.images.all())]
    for path in named:  # rows name them: age alone never removes a file
        moment = (timezone.now() - timedelta(days=400)).timestamp()
        os.utime(path, (moment, moment))
    orphans = [
        write_file(media_root, "photos/crashed-upload.jpg", days_old=2),
        write_file(media_root, "results/crashed-step.jpg", days_old=2),
        write_file(media_root, "items/replaced-garment.png", days_old=2),
        write_file(media_root, "results/nested/left.jpg", days_old=2),
    ]
    being_written = write_file(media_root, "results/being-written.jpg", days_old=0.5)
    elsewhere = write_file(media_root, "exports/not-ours.jpg", days_old=30)

    out = StringIO()
    call_command("retention_purge", "--dry-run", stdout=out)
    assert "would delete 4 orphan file(s)" in out.getvalue()
    assert all(os.path.exists(path) for path in orphans)

    out = StringIO()
    call_command("retention_purge", stdout=out)
    assert "deleted 4 orphan file(s)" in out.getvalue()
    assert not any(os.path.exists(path) for path in orphans)
    assert all(os.path.exists(path) for path in [*named, being_written, elsewhere])
    assert retention_purge()["orphanFiles"] == 0


def test_the_hourly_task_reports_orphans(media_root, db):
    write_file(media_root, "photos/crashed-upload.jpg", days_old=3)
    assert tasks.retention_purge() == {"jobs": 0, "photos": 0, "orphanFiles": 1}


def test_a_backlog_goes_in_batches_and_a_failed_batch_leaves_the_earlier_ones_deleted(
    user, catalogue, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.FITTING_RETENTION_DAYS = 30
    monkeypatch.setattr(retention, "BATCH", 2)
    photo = make_photo(user)
    jobs = [make_job(user, photo, catalogue["top"], status="completed", done=["top"]) for _ in range(5)]
    age(FittingResult, 31)
    files = {job.id: job.images.get(step="top").image.path for job in jobs}
    batches = []
    real_delete = retention.jobs_delete

    def failing_third_batch(rows):
        batches.append(sorted(rows.values_list("id", flat=True)))
        if len(batches) == 3:
            raise RuntimeError("the database went away")
        return real_delete(rows)

    monkeypatch.setattr(retention, "jobs_delete", failing_third_batch)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        retention_purge()
    assert [len(batch) for batch in batches] == [2, 2, 1]
    deleted = set(batches[0] + batches[1])
    assert set(FittingResult.objects.values_list("id", flat=True)) == {job.id for job in jobs} - deleted
    assert not any(os.path.exists(files[job_id]) for job_id in deleted)  # each batch's files went with it
    assert os.path.exists(files[batches[2][0]])

    monkeypatch.setattr(retention, "jobs_delete", real_delete)
    with django_capture_on_commit_callbacks(execute=True):
        assert retention_purge()["jobs"] == 1  # the next run takes the rest
    assert not FittingResult.objects.exists()


def expired_backlog(user, catalogue, count: int) -> dict:
    """``count`` finished jobs past the TTL, each with its own old photo and a stored step image:
    the file paths by job id, in primary key order (the order the batches take)."""
    for _ in range(count):
        make_job(user, make_photo(user), catalogue["top"], status=Status.COMPLETED, done=["top"])
    age(FittingResult, 100)
    age(UserImage, 100)
    files = {job_id: [] for job_id in FittingResult.objects.order_by("pk").values_list("pk", flat=True)}
    for row in FittingResultImage.objects.all():
        files[row.job_id].append(row.image.path)
    assert all(files.values())
    return files


def test_a_backlog_of_jobs_and_photos_is_deleted_in_batches(
    user, catalogue, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(retention, "BATCH", 2)
    files = expired_backlog(user, catalogue, 5)
    batches, real = [], retention.jobs_delete
    monkeypatch.setattr(retention, "jobs_delete", lambda rows: batches.append(real(rows)) or batches[-1])
    with django_capture_on_commit_callbacks(execute=True):
        counts = retention_purge(days=30)
    assert (counts["jobs"], counts["photos"]) == (5, 5)
    assert batches == [2, 2, 1]
    assert not FittingResult.objects.exists() and not UserImage.objects.exists()
    assert not any(os.path.exists(path) for paths in files.values() for path in paths)


def test_a_batch_that_fails_after_deleting_is_rolled_back_whole(
    user, catalogue, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(retention, "BATCH", 2)
    files = expired_backlog(user, catalogue, 5)
    calls, real = [], retention.jobs_delete

    def second_batch_fails(rows):
        calls.append(rows)
        deleted = real(rows)  # its rows are gone inside the batch's transaction...
        if len(calls) == 2:
            raise RuntimeError("the database went away")  # ...which is rolled back
        return deleted

    monkeypatch.setattr(retention, "jobs_delete", second_batch_fails)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        retention_purge(days=30)
    job_ids = list(files)
    assert list(FittingResult.objects.order_by("pk").values_list("pk", flat=True)) == job_ids[2:]
    for job_id in job_ids[:2]:  # the first batch: committed, its files deleted after the commit
        assert not any(os.path.exists(path) for path in files[job_id])
    for job_id in job_ids[2:]:  # the failed batch and the one never started: rows and files intact
        assert FittingResultImage.objects.filter(job_id=job_id).count() == len(files[job_id])
        assert all(os.path.exists(path) for path in files[job_id])
    assert UserImage.objects.count() == 5  # the photos come after the jobs: not reached
