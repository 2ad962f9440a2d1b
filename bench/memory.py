"""6. Memory per upload and per job: a 40 MP photo against a 1 MP one.

Each figure is the peak RSS of a fresh process, its own ``VmHWM`` (``/proc/self/status``)
read as it ends: ``ru_maxrss`` would not do, as Linux carries the forking parent's RSS into
the child's across ``exec``. One process uploads the photo through the real service (``photo_create``,
as the web process does), another runs the job (three steps, local engine) as a worker does.
A third kind of process only sets Django up and imports the pipeline and the engine: the
floor every worker starts from. A last case runs the 1 MP photo with a 40 MP garment image,
since catalogue images are decoded by the worker too.

``python -m bench.memory`` (also part of ``make bench``). SQLite in a temporary folder.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Row, emit, log, make_photo, met

BIG = (7300, 5500)  # 40.15 MP, just above 40 MP: UPLOAD_MAX_PIXELS is raised to take it
SMALL = (1224, 816)  # 1.0 MP
# A 40 MP upload may cost a job at most this much more than a 1 MP one.
TARGET_RATIO = 2


def _environment(tmp: Path) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "MEDIA_ROOT": str(tmp / "media"),
            "FITTING_ENGINE": "local",
            "FITTING_RESULT_CACHE": "false",
            "UPLOAD_MAX_PIXELS": "41000000",
            "LOG_LEVEL": "WARNING",
        }
    )


def _django() -> None:
    import django

    django.setup()


# --- what each child process does ------------------------------------------------------------
def _child_idle() -> str:
    _django()
    import fitting.engines.local
    import fitting.pipeline  # noqa: F401

    return "idle"


def _child_upload(path: str) -> str:
    _django()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from users.services import photo_create

    user = get_user_model().objects.get(username="demo")
    data = Path(path).read_bytes()
    photo = photo_create(owner=user, upload=SimpleUploadedFile("photo.jpg", data, "image/jpeg"))
    return f"{photo.id} {photo.width}x{photo.height} {photo.image.size}"


def _child_job(job_id: str) -> str:
    _django()
    from fitting.models import FittingResult
    from fitting.pipeline import run_job

    job = FittingResult.objects.get(id=job_id)
    run_job(job_id=job_id, attempt=job.attempt)
    job.refresh_from_db()
    return f"{job.status} {job.error_code or ''}".strip()


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(kind: str, arg: str | None) -> None:
    answer = {"idle": _child_idle, "upload": _child_upload, "job": _child_job}[kind](*([arg] if arg else []))
    print(answer, flush=True)
    print(_peak_rss_kib(), flush=True)


# --- the parent: prepare, run each child, read its peak ------------------------------------
def _measure(*args: str) -> tuple[str, float, float]:
    """Run ``python -m bench.memory child …``; its answer, peak RSS (MiB) and wall time (s)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.memory", "child", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    output = process.stdout.read()
    if process.wait() != 0:
        raise RuntimeError(f"child {args} exited {process.returncode}")
    answer, peak_kib = output.strip().splitlines()[-2:]
    return answer, int(peak_kib) / 1024, time.monotonic() - started


def _garment(size: tuple[int, int]) -> bytes:
    """A product photo: a shirt shape on a white background, at ``size``."""
    from PIL import Image, ImageDraw

    w, h = size
    image = Image.new("RGB", size, (250, 250, 250))
    ImageDraw.Draw(image).polygon(
        [(w * 0.3, h * 0.1), (w * 0.7, h * 0.1), (w * 0.9, h * 0.3), (w * 0.75, h * 0.4), (w * 0.72, h * 0.9),
         (w * 0.28, h * 0.9), (w * 0.25, h * 0.4), (w * 0.1, h * 0.3)],
        fill=(30, 50, 120),
    )  # fmt: skip
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _start(photo_id: int, items) -> str:
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from fitting.services.start import RequestedItem, fitting_start
    from users.models import UserImage

    user = get_user_model().objects.get(username="demo")
    photo = UserImage.objects.get(id=photo_id)
    with transaction.atomic():
        job, _ = fitting_start(
            user=user,
            photo_url=photo.image.url,
            items=[RequestedItem(item_id=i.id, category=i.category) for i in items],
        )
    return str(job.id)


def run() -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    _environment(tmp)
    _django()
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.management import call_command

    from core import images
    from fitting.models import Item

    call_command("migrate", verbosity=0)
    from django.test import override_settings

    with override_settings(DEBUG=True):  # seed_demo runs only with DEBUG on; the bench keeps it off
        call_command("seed_demo", stdout=io.StringIO())
    demo_items = [
        Item.objects.filter(category=c, is_active=True).order_by("id").first() for c in ("top", "bottom", "outer")
    ]

    big_garment = _garment(BIG)
    garment = Item(name="40 MP shirt", category="top", content_hash=images.sha256_hex(big_garment))
    garment.image.save("shirt.jpg", ContentFile(big_garment), save=False)
    garment.save()

    _, idle_mib, _ = _measure("idle")
    log(f"[memory] fresh worker process (Django + pipeline + OpenCV): {idle_mib:.0f} MiB")
    results: dict[str, tuple[float, float, str]] = {}
    cases = [
        ("1 MP photo", SMALL, demo_items),
        ("40 MP photo", BIG, demo_items),
        ("1 MP photo, 40 MP garment", SMALL, [garment, *demo_items[1:]]),
    ]
    for label, size, items in cases:
        path = tmp / f"{size[0]}x{size[1]}.jpg"
        if not path.exists():
            path.write_bytes(make_photo(size))
        stored, upload_mib, upload_s = _measure("upload", str(path))
        photo_id, stored_size, stored_bytes = stored.split()
        job_id = _start(int(photo_id), items)
        outcome, job_mib, job_s = _measure("job", job_id)
        results[label] = (upload_mib, job_mib, outcome)
        log(
            f"[memory] {label}: upload {path.stat().st_size / 2**20:.1f} MiB {size[0]}x{size[1]} -> stored "
            f"{stored_size}, {int(stored_bytes) / 2**20:.2f} MiB; upload process peak {upload_mib:.0f} MiB "
            f"({upload_s:.1f} s); job ({outcome}) process peak {job_mib:.0f} MiB ({job_s:.1f} s)"
        )

    small_job, big_job, garment_job = (results[label][1] for label, _, _ in cases)
    limit = TARGET_RATIO * small_job
    side = getattr(settings, "PHOTO_MAX_SIDE", None)
    return [
        Row("6. memory: fresh worker process (floor)", f"{idle_mib:.0f} MiB"),
        Row("6. memory: job peak RSS, 1 MP photo", f"{small_job:.0f} MiB"),
        Row(
            "6. memory: job peak RSS, 40 MP photo",
            f"{big_job:.0f} MiB",
            f"≤ {TARGET_RATIO}× the 1 MP job ({limit:.0f} MiB)",
            met(big_job <= limit),
        ),
        Row(
            "6. memory: job peak RSS, 40 MP garment",
            f"{garment_job:.0f} MiB",
            f"≤ {TARGET_RATIO}× the 1 MP job ({limit:.0f} MiB)",
            met(garment_job <= limit),
        ),
        Row(
            "6. memory: upload peak RSS, 1 MP / 40 MP",
            f"{results[cases[0][0]][0]:.0f} / {results[cases[1][0]][0]:.0f} MiB",
        ),
        Row("6. memory: PHOTO_MAX_SIDE", str(side)),
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _child(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        emit(run())
