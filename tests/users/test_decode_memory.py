"""A small upload that describes a huge image cannot take the web process's memory (issue 25, 2).

Each case uploads through the real service (``photo_create``) in a child process of its own
and reads how far the uploads raised that process's peak memory: a 6000x6600 image in every
accepted format, once and 8 times at once. Pillow alone decodes these at full size (160 MB of
RGBA; 600 MB for a WebP; 8 at once took one process to 5 GB).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from tests.e2e import ROOT

# dbagnostic: the child processes run on a SQLite file of their own, whatever the stage.
pytestmark = pytest.mark.dbagnostic

SIZE = (6000, 6600)  # 39.6 MP: just under UPLOAD_MAX_PIXELS
ONE_UPLOAD_MIB = 150
EIGHT_UPLOADS_MIB = 600
FORMATS = {  # what an attacker sends: a few KB each
    "webp": ("WEBP", "RGB", {"lossless": True}),
    "png": ("PNG", "RGBA", {}),
    "heic": ("HEIF", "RGB", {"quality": 50}),
    "jpg": ("JPEG", "RGB", {"quality": 85}),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A migrated SQLite database and the four images, made once for the module."""
    tmp = tmp_path_factory.mktemp("decode-memory")
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp / "media"),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    for extension, (fmt, mode, save_args) in FORMATS.items():
        image = Image.new(mode, SIZE, (200, 120, 90, 128)[: len(mode)])
        ImageDraw.Draw(image).rectangle((1000, 1000, 3000, 5000), fill=(10, 20, 200, 255)[: len(mode)])
        buffer = io.BytesIO()
        image.save(buffer, fmt, **save_args)
        del image
        (tmp / f"big.{extension}").write_bytes(buffer.getvalue())
    return tmp, env


def growth_mib(workspace, extension: str, count: int) -> float:
    tmp, env = workspace
    done = subprocess.run(
        [sys.executable, "-m", "tests.users.upload_memory_child", str(tmp / f"big.{extension}"), str(count)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    assert len(report["stored"]) == count
    assert set(report["stored"]) == {"1862x2048"}  # accepted and stored at the working size
    return report["growth_mib"]


@pytest.mark.parametrize("extension", FORMATS)
def test_one_huge_upload_raises_peak_memory_by_at_most_150_mb(workspace, extension):
    growth = growth_mib(workspace, extension, 1)
    assert growth <= ONE_UPLOAD_MIB, f"{extension}: one upload raised the peak by {growth} MiB"


@pytest.mark.parametrize("extension", FORMATS)
def test_eight_huge_uploads_at_once_raise_peak_memory_by_at_most_600_mb(workspace, extension):
    growth = growth_mib(workspace, extension, 8)
    assert growth <= EIGHT_UPLOADS_MIB, f"{extension}: 8 uploads raised the peak by {growth} MiB"
