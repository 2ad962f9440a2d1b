"""6. Memory per upload and per job: a 40 MP photo against a 1 MP one.

Each figure is the peak RSS of a fresh process, its own ``VmHWM`` (``/proc/self/status``)
read as it ends: ``ru_maxrss`` would not do, as Linux carries the forking parent's RSS into
the child's across ``exec``. One process uploads the photo through the real service (``photo_create``,
as the web process does), another runs the job (three steps, local engine) as a worker does.
A third kind of process only sets Django up and imports the pipeline and the engine: the
floor every worker starts from. A last case runs the 1 MP photo with a 40 MP garment image,
since catalogue images are decoded by the worker too.

Then (issue 25, item 2) the web side against images that are small files but huge pictures:
a 6000x6600 lossless WebP, RGBA PNG, HEIC and JPEG, uploaded through ``photo_create`` once
and 8 times at once (threads, as a web process serves them); the figure is how far that
raised the process's peak (``VmHWM`` after minus ``VmRSS`` just before). Targets: at most
150 MB for one, 600 MB for 8.

``python -m bench.memory`` (also part of ``make bench``); ``python -m bench.memory decode``
runs only the upload-per-format part. SQLite in a temporary folder.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import NO_STAND_INS, ROOT, Row, emit, log, main, make_photo, met, require

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
            **NO_STAND_INS,
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


def _status_kib(field: str = "VmHWM") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _peak_rss_kib() -> int:
    return _status_kib("VmHWM")


def _child_uploads(path: str, count: str) -> str:
    """Upload ``path`` ``count`` times at once; how far that raised the peak (KiB) and the stored sizes."""
    import gc
    import threading

    _django()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection

    from users.services import photo_create

    user = get_user_model().objects.get(username="demo")
    photo_create(owner=user, upload=SimpleUploadedFile("warm.jpg", make_photo((64, 64)), "image/jpeg"))  # warm up
    data = Path(path).read_bytes()
    barrier = threading.Barrier(int(count))
    stored: list[str] = []

    def upload() -> None:
        barrier.wait()
        try:
            photo = photo_create(owner=user, upload=SimpleUploadedFile(Path(path).name, data, "image/octet-stream"))
            stored.append(f"{photo.width}x{photo.height}")
        except Exception as exc:
            stored.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(int(count))]
    gc.collect()
    before = _status_kib("VmRSS")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return f"{_status_kib('VmHWM') - before} {','.join(sorted(set(stored)))}"


def _child(kind: str, *args: str) -> None:
    children = {"idle": _child_idle, "upload": _child_upload, "job": _child_job, "uploads": _child_uploads}
    answer = children[kind](*args)
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


def _prepare(tmp: Path) -> None:
    _environment(tmp)
    _django()
    from django.core.management import call_command
    from django.test import override_settings

    call_command("migrate", verbosity=0)
    with override_settings(DEBUG=True):  # seed_demo runs only with DEBUG on; the bench keeps it off
        call_command("seed_demo", stdout=io.StringIO())


HUGE = (6000, 6600)  # 39.6 MP, under UPLOAD_MAX_PIXELS, in a few KB for most formats
HUGE_FORMATS = {"webp": ("WEBP", "RGB", {"lossless": True}), "png": ("PNG", "RGBA", {}),
                "heic": ("HEIF", "RGB", {"quality": 50}), "jpg": ("JPEG", "RGB", {"quality": 85})}  # fmt: skip
ONE_UPLOAD_MIB, EIGHT_UPLOADS_MIB = 150, 600


def run_decode() -> list[Row]:
    """One and 8 concurrent uploads of a 6000x6600 image per format: the peak each adds."""
    from PIL import Image, ImageDraw
    from pillow_heif import register_heif_opener

    register_heif_opener()
    rows = []
    for extension, (fmt, mode, save_args) in HUGE_FORMATS.items():
        path = Path(os.environ["MEDIA_ROOT"]).parent / f"huge.{extension}"
        image = Image.new(mode, HUGE, (200, 120, 90, 128)[: len(mode)])
        ImageDraw.Draw(image).rectangle((1000, 1000, 3000, 5000), fill=(10, 20, 200, 255)[: len(mode)])
        image.save(path, fmt, **save_args)
        del image
        figures = {}
        for count in (1, 8):
            answer, _, seconds = _measure("uploads", str(path), str(count))
            growth_kib, stored = answer.split()
            figures[count] = int(growth_kib) / 1024
            log(
                f"[memory] {extension} {HUGE[0]}x{HUGE[1]} ({path.stat().st_size / 1024:.1f} KiB) x{count}: "
                f"peak +{figures[count]:.0f} MiB, stored {stored} ({seconds:.1f} s)"
            )
        rows.append(
            Row(
                f"6b. memory: upload peak growth, {extension} 6000×6600 ({path.stat().st_size / 1024:.1f} KiB), 1 / 8",
                f"+{figures[1]:.0f} / +{figures[8]:.0f} MiB",
                f"≤ {ONE_UPLOAD_MIB} / ≤ {EIGHT_UPLOADS_MIB} MB",
                met(figures[1] <= ONE_UPLOAD_MIB and figures[8] <= EIGHT_UPLOADS_MIB),
            )
        )
    return rows


def run() -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    _prepare(tmp)
    from django.conf import settings
    from django.core.files.base import ContentFile

    from core import images
    from fitting.models import Item

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
        require(outcome == "completed", f"{label}: the job ended {outcome}, so its peak is not a job's")
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
        *run_decode(),
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _child(sys.argv[2], *sys.argv[3:])
    elif sys.argv[1:] == ["decode"]:
        _prepare(Path(tempfile.mkdtemp(prefix="bench-memory-")))
        emit(run_decode())
    else:
        main(run)
