"""Uploads cannot fill the disk or the memory: working size, bounded bytes, rate, quota, full disk.

Also: no file is left that no row names when a write or an insert fails.
"""

import errno
import hashlib
import io
import os
import threading

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from PIL import Image
from rest_framework.test import APIClient

from core import images
from fitting.models import FittingResult
from tests.factories import image_bytes, make_photo, run_now, start_job
from users.models import UserImage
from users.services import photo_create

URL = "/api/users/me/photos"
# The documented bound of a stored photo: half a byte per pixel plus the JPEG headers.
MAX_STORED_BYTES = 2048 * 2048 // 2 + 4096


def upload(api, data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return api.post(URL, {"image": SimpleUploadedFile(name, data, content_type=content_type)}, format="multipart")


def stored_bytes(photo_id: int) -> bytes:
    with UserImage.objects.get(id=photo_id).image.open("rb") as handle:
        return handle.read()


def files(media_root, folder: str) -> list:
    return sorted((media_root / folder).glob("*"))


def noise_png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(11).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_with_orientation(size: tuple[int, int], orientation: int) -> bytes:
    image = Image.new("RGB", size, (90, 120, 200))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=90)
    return buffer.getvalue()


# --- working size -------------------------------------------------------------------------
def test_a_large_photo_is_stored_at_the_working_size(api, settings):
    assert settings.PHOTO_MAX_SIDE == 2048  # the default
    response = upload(api, image_bytes((4096, 1024), fmt="JPEG"))
    assert response.status_code == 201, response.content
    assert (response.json()["width"], response.json()["height"]) == (2048, 512)
    data = stored_bytes(response.json()["id"])
    assert Image.open(io.BytesIO(data)).size == (2048, 512)
    # The result cache keys on the stored bytes.
    assert UserImage.objects.get().content_hash == hashlib.sha256(data).hexdigest()


def test_the_working_size_is_configurable_and_applies_after_exif_rotation(api, settings):
    settings.PHOTO_MAX_SIDE = 300
    response = upload(api, jpeg_with_orientation((1200, 800), orientation=6))  # really 800x1200
    assert (response.json()["width"], response.json()["height"]) == (200, 300)
    assert Image.open(io.BytesIO(stored_bytes(response.json()["id"]))).size == (200, 300)


def test_a_small_photo_is_never_enlarged(api, settings):
    settings.PHOTO_MAX_SIDE = 300
    response = upload(api, image_bytes((299, 41), fmt="PNG"), name="a.png")
    assert (response.json()["width"], response.json()["height"]) == (299, 41)


def test_the_canvas_is_the_stored_size(api, user, catalogue, settings):
    settings.PHOTO_MAX_SIDE = 256
    response = upload(api, image_bytes((600, 900), fmt="JPEG"))
    job = run_now(start_job(user, UserImage.objects.get(id=response.json()["id"]), catalogue["top"]))
    assert job.status == "completed", job.error_message
    assert {(row.width, row.height) for row in job.images.all()} == {(171, 256)}


def test_a_photo_stored_before_the_bound_gets_a_bounded_canvas(user, catalogue, settings):
    """A row from before PHOTO_MAX_SIDE (a 1200x1800 file): the job still works at the bound."""
    data = image_bytes((1200, 1800), fmt="JPEG")
    legacy = UserImage(owner=user, width=1200, height=1800, content_hash=images.sha256_hex(data))
    legacy.image.save("photo.jpg", ContentFile(data), save=False)
    legacy.save()
    settings.PHOTO_MAX_SIDE = 256
    job = run_now(start_job(user, legacy, catalogue["top"]))
    assert job.status == "completed", job.error_message
    assert {(row.width, row.height) for row in job.images.all()} == {(171, 256)}


# --- bounded bytes ------------------------------------------------------------------------
def test_a_noisy_png_does_not_become_a_huge_jpeg(api, settings, media_root):
    data = noise_png((2200, 2200))  # ~14.5 MB of incompressible pixels, under the upload limit
    assert len(data) < settings.UPLOAD_MAX_BYTES
    response = upload(api, data, name="noise.png", content_type="image/png")
    assert response.status_code == 201, response.content
    stored = stored_bytes(response.json()["id"])
    assert len(stored) <= MAX_STORED_BYTES  # was ~13 MB as a quality-92 JPEG
    image = Image.open(io.BytesIO(stored))
    assert image.format == "JPEG"
    assert max(image.size) <= settings.PHOTO_MAX_SIDE
    assert UserImage.objects.get().content_hash == hashlib.sha256(stored).hexdigest()


def test_a_transparent_noisy_png_is_flattened_into_a_bounded_jpeg(api):
    response = upload(api, noise_png((900, 1300), "RGBA"), name="noise.png", content_type="image/png")
    assert response.status_code == 201, response.content
    stored = stored_bytes(response.json()["id"])
    assert len(stored) <= 900 * 1300 // 2 + 4096  # as a PNG it weighed ~4.7 MB
    assert Image.open(io.BytesIO(stored)).format == "JPEG"
    assert response.json()["url"].endswith(".jpg")


# --- odd shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(70000, 1), (1, 70000), (2100, 200)], ids=["70000x1", "1x70000", "10.5:1"])
def test_an_extreme_aspect_ratio_is_refused(api, size, media_root):
    response = upload(api, image_bytes(size, fmt="PNG"), name="strip.png", content_type="image/png")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "IMAGE_ASPECT_RATIO"
    assert response.json()["error"]["field"] == "image"
    assert UserImage.objects.count() == 0
    assert files(media_root, "photos") == []


def test_a_ten_to_one_photo_keeps_a_short_side_of_at_least_a_pixel(api, settings):
    settings.PHOTO_MAX_SIDE = 256
    response = upload(api, image_bytes((2560, 256), fmt="PNG"), name="pano.png", content_type="image/png")
    assert response.status_code == 201, response.content
    assert (response.json()["width"], response.json()["height"]) == (256, 26)


# --- rate and quota -----------------------------------------------------------------------
def test_uploads_are_throttled_per_user(api, settings, other_user):
    cache.clear()
    settings.UPLOAD_RATE = "2/minute"
    codes = [upload(api, image_bytes(fmt="JPEG")).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    response = upload(api, image_bytes(fmt="JPEG"))
    assert response.json()["error"]["code"] == "THROTTLED"
    assert int(response["Retry-After"]) > 0
    assert api.get(URL).status_code == 200  # reads are not throttled
    other = APIClient()
    other.force_authenticate(other_user)
    assert upload(other, image_bytes(fmt="JPEG")).status_code == 201
    cache.clear()


def test_photos_per_user_are_capped(api, settings, other_user, media_root):
    settings.PHOTO_QUOTA = 2
    assert [upload(api, image_bytes(fmt="JPEG")).status_code for _ in range(2)] == [201, 201]
    response = upload(api, image_bytes(fmt="JPEG"))
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "QUOTA_EXCEEDED"
    assert "2" in response.json()["error"]["message"]
    assert UserImage.objects.count() == 2
    assert len(files(media_root, "photos")) == 2
    other = APIClient()
    other.force_authenticate(other_user)
    assert upload(other, image_bytes(fmt="JPEG")).status_code == 201  # per user
    UserImage.objects.filter(owner__username="alice").first().delete()
    assert upload(api, image_bytes(fmt="JPEG")).status_code == 201  # room again


class MeetingStorage(FileSystemStorage):
    """Both uploads reach the disk before either inserts its row: the race the lock closes."""

    barrier = threading.Barrier(2, timeout=10)

    def _save(self, name, content):
        self.barrier.wait()
        return super()._save(name, content)


@pytest.mark.django_db(transaction=True)
def test_two_uploads_at_once_cannot_pass_the_quota(settings, media_root):
    from tests.factories import make_user

    owner = make_user("carol")
    settings.PHOTO_QUOTA = 1
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.MeetingStorage"}}
    MeetingStorage.barrier.reset()
    outcomes: list[str] = []

    def one_upload():
        try:
            photo_create(owner=owner, upload=SimpleUploadedFile("a.jpg", image_bytes(fmt="JPEG")))
            outcomes.append("stored")
        except Exception as exc:
            outcomes.append(getattr(exc, "code", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=one_upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["QUOTA_EXCEEDED", "stored"]
    assert UserImage.objects.filter(owner=owner).count() == 1
    assert len(files(media_root, "photos")) == 1  # the refused upload's file is gone


# --- a full disk, a failed insert: nothing left behind -------------------------------------
class FullDiskStorage(FileSystemStorage):
    """The disk fills up halfway through writing a file, as os.write reports it."""

    def _save(self, name, content):
        path = self.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content.read()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")


def fill_the_disk(settings) -> None:
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": f"{__name__}.FullDiskStorage"}}


def test_a_full_disk_during_an_upload_answers_507_and_leaves_nothing(api, settings, media_root):
    fill_the_disk(settings)
    response = upload(api, image_bytes(fmt="JPEG"))
    assert response.status_code == 507, response.content
    assert response.json()["error"]["code"] == "STORAGE_FULL"
    assert UserImage.objects.count() == 0
    assert files(media_root, "photos") == []


def test_a_failed_insert_removes_the_photo_file(user, media_root):
    def refuse_photo_rows(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "users_userimage"'):
            raise OperationalError("disk I/O error")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse_photo_rows), pytest.raises(OperationalError):
        photo_create(owner=user, upload=SimpleUploadedFile("a.jpg", image_bytes(fmt="JPEG")))
    assert UserImage.objects.count() == 0
    assert files(media_root, "photos") == []


def test_a_full_disk_during_a_step_leaves_no_partial_step_image(user, catalogue, settings, media_root):
    photo = make_photo(user)
    fill_the_disk(settings)
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "failed"
    assert job.images.count() == 0
    assert files(media_root, "results") == []
    assert FittingResult.objects.count() == 1
