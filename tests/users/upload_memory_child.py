"""Child process of test_decode_memory: uploads a photo N times at once through ``photo_create``.

``python -m tests.users.upload_memory_child <image file> <N>``, with DJANGO_SETTINGS_MODULE,
DATABASE_URL and MEDIA_ROOT set by the parent (a migrated SQLite file of its own). Prints one
JSON line: how far the uploads raised the process's peak memory above its resident memory
just before them (``VmHWM`` after minus ``VmRSS`` before, MiB), and the stored sizes.

``VmHWM``/``VmRSS`` of ``/proc/self/status``, not ``ru_maxrss``: Linux carries the forking
parent's peak into a child's ``ru_maxrss`` across ``exec``, which would hide a child's growth
below pytest's own size.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
from pathlib import Path


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(path: str, count: int) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection

    from tests.factories import image_bytes
    from users.services import photo_create

    user, _ = get_user_model().objects.get_or_create(username="memory")
    # Warm up: every library and code path loaded, a connection per thread opened later.
    photo_create(owner=user, upload=SimpleUploadedFile("warm.png", image_bytes((64, 64)), "image/png"))
    data = Path(path).read_bytes()
    barrier = threading.Barrier(count)
    stored: list[str] = []
    errors: list[str] = []

    def upload() -> None:
        barrier.wait()
        try:
            photo = photo_create(owner=user, upload=SimpleUploadedFile(Path(path).name, data, "image/octet-stream"))
            stored.append(f"{photo.width}x{photo.height}")
        except Exception as exc:  # reported, so the parent's assertion shows it
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=upload) for _ in range(count)]
    gc.collect()
    before = status_kib("VmRSS")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    growth = (status_kib("VmHWM") - before) / 1024
    print(json.dumps({"growth_mib": round(growth, 1), "stored": stored, "errors": errors}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
