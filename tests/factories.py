"""Factories for tests: real image files, real rows."""

from __future__ import annotations

import contextlib
import io
import itertools
import threading
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from PIL import Image, ImageDraw

from core import images
from fitting.engines import engine_identity
from fitting.models import STEP_ORDER, FittingResult, FittingResultImage, FittingResultItem, Item, Status
from fitting.pipeline import run_job
from fitting.services.items import item_save
from fitting.services.start import RequestedItem, fitting_start
from users.models import UserImage
from users.services import photo_create, token_issue

_counter = itertools.count(1)


def image_bytes(size=(64, 96), color=(200, 180, 160), fmt="PNG", **save_args) -> bytes:
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2], fill=(20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def make_user(username: str | None = None, password: str = "pw-for-tests-123", **extra):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(username=username, password=password, **extra)


def make_token(user) -> str:
    """A new API token of ``user``, as POST /api/auth/token issues it: the key to send."""
    return token_issue(user=user)[1]


def make_photo(owner, size=(64, 96), color=(200, 180, 160)) -> UserImage:
    """A photo uploaded through the service, as the API stores it."""
    return photo_create(owner=owner, upload=SimpleUploadedFile("photo.jpg", image_bytes(size, color, fmt="JPEG")))


def make_item(category: str = "top", name: str | None = None, color=(30, 40, 120), active: bool = True) -> Item:
    item = Item(name=name or f"{category} {next(_counter)}", category=category, is_active=active)
    return item_save(item=item, image=SimpleUploadedFile("item.png", image_bytes((48, 48), color)))


def start_job(user, photo, *items, **options) -> FittingResult:
    """A job started through the service, as the API does (enqueued on commit); ``options``:
    fitting_start's other arguments (num_samples, seed, …)."""
    job, _ = fitting_start(
        user=user,
        photo_url=photo.image.url,
        items=[RequestedItem(item_id=i.id, category=i.category) for i in items],
        **options,
    )
    return job


def run_now(job: FittingResult) -> FittingResult:
    """Run the job's current attempt inline, as a worker would, and read it back."""
    run_job(job_id=str(job.id), attempt=job.attempt)
    return FittingResult.objects.get(id=job.id)


@contextlib.contextmanager
def running_in_a_worker(job: FittingResult, gate: threading.Event):
    """Run the job's attempt in a thread, as a worker would (yields the thread); on leaving, open
    ``gate`` (the held engine calls answer) and wait for the worker to end."""

    def worker():
        try:
            run_job(job_id=str(job.id), attempt=job.attempt)
        finally:
            connection.close()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        gate.set()
        thread.join(timeout=60)
    assert not thread.is_alive()


def make_job(owner, photo, *items, status=Status.FAILED, failed_step=None, done=(), **fields) -> FittingResult:
    """A job row as the pipeline leaves it, with a stored image for each step in ``done``."""
    identity = engine_identity()
    now = timezone.now()
    terminal = status != Status.PROCESSING
    defaults = {
        "engine": identity.name,
        "model": identity.model,
        "prompt_version": identity.prompt_version,
        "deadline_at": now + timedelta(minutes=5),
        "started_at": now - timedelta(seconds=12) if terminal else None,
        "finished_at": now if terminal else None,
        "error_code": "ENGINE_REJECTED" if status == Status.FAILED else "",
        "error_message": "fake error 400: bad garment" if status == Status.FAILED else "",
    }
    created_at = fields.pop("created_at", None)
    job = FittingResult.objects.create(
        owner=owner, user_image=photo, status=status, failed_step=failed_step, **{**defaults, **fields}
    )
    if created_at is not None:
        FittingResult.objects.filter(id=job.id).update(created_at=created_at)
        job.refresh_from_db()
    ordered = sorted(items, key=lambda i: STEP_ORDER.index(i.category))
    for order, item in enumerate(ordered, start=1):
        FittingResultItem.objects.create(job=job, item=item, category=item.category, order=order)
    for step in done:
        row = FittingResultImage(job=job, step=step, width=photo.width, height=photo.height)
        picture = Image.new("RGB", (photo.width, photo.height), (90, 120, 200))
        row.image.save(f"{step}.jpg", ContentFile(images.encode_result(picture)), save=False)
        row.save()
    return job
