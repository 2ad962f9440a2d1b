"""The sequential job on the local engine: order, resume, failure, timeout, re-delivery, sweep."""

import io
import threading
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ
from PIL import Image

from fitting.models import FittingResult, FittingResultImage
from fitting.pipeline import run_job
from fitting.services.lifecycle import fitting_requeue_lost, fitting_sweep_expired
from fitting.tasks import sweep_fittings
from tests.factories import make_item, run_now, start_job


def read(row: FittingResultImage) -> Image.Image:
    with row.image.open("rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
        image.load()
    return image


def test_three_steps_complete_in_fixed_order(user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["outer"], catalogue["bottom"], catalogue["top"]))
    assert job.status == "completed"
    assert job.current_step is None and job.failed_step is None
    assert job.started_at and job.finished_at and job.finished_at >= job.started_at
    assert job.llm_message
    steps = list(job.images.order_by("id").values_list("step", flat=True))
    assert steps == ["top", "bottom", "outer", "final"]
    for row in job.images.all():
        assert (row.width, row.height) == (photo.width, photo.height)
        assert read(row).size == (photo.width, photo.height)
    final = job.images.get(step="final")
    assert final.image.name == job.images.get(step="outer").image.name  # no copy of the last step
    assert set(job.step_metrics) >= {"top", "bottom", "outer"}
    assert all(job.step_metrics[s]["latency_ms"] >= 0 for s in ("top", "bottom", "outer"))


def test_request_order_does_not_change_the_result(user, photo, catalogue):
    one = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    two = run_now(start_job(user, photo, catalogue["bottom"], catalogue["top"]))
    with one.images.get(step="final").image.open("rb") as a, two.images.get(step="final").image.open("rb") as b:
        assert a.read() == b.read()


def test_unreadable_garment_at_second_step_keeps_the_first(user, photo, catalogue):
    bottom = catalogue["bottom"]
    bottom.image.save("broken.png", ContentFile(b"not an image at all"))
    job = run_now(start_job(user, photo, catalogue["top"], bottom))
    assert job.status == "failed"
    assert job.failed_step == "bottom"
    assert job.current_step is None
    assert job.error_code == "ITEM_IMAGE_UNREADABLE"
    assert job.error_message
    assert job.finished_at is not None
    assert list(job.images.values_list("step", flat=True)) == ["top"]


def test_unreadable_photo_fails_the_first_step(user, photo, catalogue):
    photo.image.storage.delete(photo.image.name)
    job = run_now(start_job(user, photo, catalogue["bottom"]))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "bottom", "PHOTO_UNREADABLE")
    assert job.images.count() == 0


def test_past_deadline_ends_as_timeout_at_the_step_it_was_in(user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    FittingResult.objects.filter(id=job.id).update(deadline_at=timezone.now() - timedelta(seconds=1))
    job = run_now(job)
    assert (job.status, job.failed_step, job.error_code) == ("timeout", "top", "TIMEOUT")
    assert job.finished_at is not None


def test_redelivered_task_does_nothing(user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    finished_at = job.finished_at
    job = run_now(job)  # the broker delivers the same task again
    assert job.status == "completed" and job.finished_at == finished_at
    assert job.images.count() == 3


def test_a_stale_attempt_does_not_run(user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    run_job(job_id=str(job.id), attempt=job.attempt + 1)
    job.refresh_from_db()
    assert job.started_at is None and job.images.count() == 0


@pytest.mark.django_db(transaction=True)
def test_double_delivery_at_once_runs_the_job_once(user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"], catalogue["outer"])
    barrier = threading.Barrier(2)
    errors = []

    def deliver():
        try:
            barrier.wait()
            run_job(job_id=str(job.id), attempt=1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    job.refresh_from_db()
    assert job.status == "completed"
    assert sorted(job.images.values_list("step", flat=True)) == ["bottom", "final", "outer", "top"]


# --- the sweep -----------------------------------------------------------------------------
def test_sweep_ends_a_job_whose_worker_died(user, photo, catalogue, settings):
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"])
    # The worker claimed it, finished top, was in bottom, then died.
    FittingResult.objects.filter(id=job.id).update(
        started_at=timezone.now(),
        current_step="bottom",
        deadline_at=timezone.now() - timedelta(seconds=settings.FITTING_SWEEP_GRACE + 1),
    )
    fresh = start_job(user, photo, catalogue["top"])  # inside its deadline: untouched
    assert sweep_fittings()["timedOut"] == 1
    job.refresh_from_db()
    assert (job.status, job.failed_step, job.current_step, job.error_code) == ("timeout", "bottom", None, "TIMEOUT")
    assert job.finished_at is not None
    fresh.refresh_from_db()
    assert fresh.status == "processing"


def test_sweep_within_grace_leaves_the_job(user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    FittingResult.objects.filter(id=job.id).update(deadline_at=timezone.now() - timedelta(seconds=5))
    assert fitting_sweep_expired() == 0


def test_sweep_enqueues_a_lost_job_again(user, photo, catalogue, settings):
    job = start_job(user, photo, catalogue["top"])
    OrmQ.objects.all().delete()  # the message was lost (e.g. Redis restarted)
    FittingResult.objects.filter(id=job.id).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.FITTING_REQUEUE_AFTER + 1)
    )
    started = start_job(user, photo, catalogue["top"])
    FittingResult.objects.filter(id=started.id).update(
        started_at=timezone.now(), enqueued_at=timezone.now() - timedelta(hours=1)
    )
    OrmQ.objects.all().delete()
    assert fitting_requeue_lost() == 1
    assert [q.task["args"] for q in OrmQ.objects.all()] == [(str(job.id), 1)]
    assert fitting_requeue_lost() == 0  # enqueued_at moved: not again until it is stale again
    assert run_now(job).status == "completed"


def test_sweep_does_not_requeue_past_the_deadline(user, photo, catalogue, settings):
    job = start_job(user, photo, catalogue["top"])
    OrmQ.objects.all().delete()
    FittingResult.objects.filter(id=job.id).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.FITTING_REQUEUE_AFTER + 1),
        deadline_at=timezone.now() - timedelta(seconds=1),
    )
    assert fitting_requeue_lost() == 0
    assert OrmQ.objects.count() == 0


def test_sweep_schedule_exists_once(db):
    from django_q.models import Schedule

    schedules = Schedule.objects.filter(func="fitting.tasks.sweep_fittings")
    assert schedules.count() == 1
    assert schedules.get().minutes == 1


def test_every_schedule_names_a_task_that_exists(db):
    from django.utils.module_loading import import_string
    from django_q.models import Schedule

    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert funcs == {"fitting.tasks.sweep_fittings", "fitting.tasks.retention_purge", "fitting.tasks.webhook_sweep"}
    for func in funcs:
        assert callable(import_string(func))


def test_inactive_item_after_start_still_runs(user, photo, catalogue):
    top = make_item("top")
    job = start_job(user, photo, top)
    top.is_active = False
    top.save()
    assert run_now(job).status == "completed"


# --- reprocess ------------------------------------------------------------------------------
def test_reprocess_resumes_after_the_last_finished_step(user, photo, catalogue):
    from fitting.services.lifecycle import fitting_reprocess

    bottom = catalogue["bottom"]
    good = bottom.image.name
    bottom.image.save("broken.png", ContentFile(b"broken"))
    job = run_now(start_job(user, photo, catalogue["top"], bottom))
    top_row = job.images.get(step="top")
    assert job.failed_step == "bottom"
    bottom.image.name = good  # the catalogue is fixed
    bottom.save()
    job = fitting_reprocess(job=job, enqueue=False)
    assert (job.status, job.attempt, job.failed_step, job.error_code) == ("processing", 2, None, "")
    assert job.deadline_at > timezone.now()
    job = run_now(job)
    assert job.status == "completed", job.error_message
    assert job.images.get(step="top").id == top_row.id  # the first step was not redone
    assert sorted(job.images.values_list("step", flat=True)) == ["bottom", "final", "top"]


def test_reprocess_restart_redoes_every_step(user, photo, catalogue):
    from fitting.services.lifecycle import fitting_reprocess

    job = start_job(user, photo, catalogue["top"])
    FittingResult.objects.filter(id=job.id).update(deadline_at=timezone.now())
    job = run_now(job)
    assert job.status == "timeout"
    job = run_now(fitting_reprocess(job=job, restart=True, enqueue=False))
    assert job.status == "completed" and job.attempt == 2


def test_only_failed_or_timed_out_jobs_are_reprocessed(user, photo, catalogue):
    from fitting.errors import NotReprocessableError
    from fitting.services.lifecycle import fitting_reprocess

    job = run_now(start_job(user, photo, catalogue["top"]))
    with pytest.raises(NotReprocessableError):
        fitting_reprocess(job=job)


def test_a_dress_outerwear_and_shoes_run_in_step_order(user, photo, catalogue):
    dress, shoes = make_item("dress", color=(150, 40, 60)), make_item("shoes", color=(118, 78, 46))
    job = run_now(start_job(user, photo, shoes, catalogue["outer"], dress))
    assert job.status == "completed", job.error_message
    assert list(job.images.order_by("id").values_list("step", flat=True)) == ["dress", "outer", "shoes", "final"]
    assert job.llm_message


def test_shoes_on_a_photo_without_feet_fail_their_step_after_the_others(user, catalogue):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from demo.samples.make_images import HERE
    from users.services import photo_create

    # The drawn figure cut at the hips: her face is found, her feet are below the frame.
    buffer = io.BytesIO()
    Image.open(HERE / "person_drawn.png").convert("RGB").crop((0, 0, 768, 576)).save(buffer, "PNG")
    portrait = photo_create(owner=user, upload=SimpleUploadedFile("hips.png", buffer.getvalue()))
    job = run_now(start_job(user, portrait, catalogue["top"], make_item("shoes")))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "shoes", "GARMENT_NOT_PLACED")
    assert list(job.images.values_list("step", flat=True)) == ["top"]
