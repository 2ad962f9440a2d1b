"""MEDIA_STORAGE=s3 against a real S3 API server (moto_server): private bucket, pre-signed URLs,
matching by object key, erasure and the orphan sweep on the bucket, nothing on local disk."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from config.storage import s3_storage
from core.files import files_delete_orphans
from core.media import media_name
from fitting.models import FittingResult
from tests.factories import image_bytes, make_item, make_photo, make_user, run_now, start_job
from tests.test_deploy_check import PRODUCTION as ONE_MACHINE
from tests.test_deploy_check import ROOT
from users.models import UserImage

# Production on the bucket: the app does not serve media itself.
PRODUCTION = {k: v for k, v in ONE_MACHINE.items() if k != "SERVE_MEDIA"}


def files_in(directory) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]


def assert_presigned(url: str, server: str, bucket: str, expiry: int = 900) -> dict:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == server
    assert parts.path.startswith(f"/{bucket}/")  # path-style, as S3-compatible stores use
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Signature"]
    assert query["X-Amz-Expires"] == str(expiry)
    return query


def unsigned(url: str) -> str:
    return url.split("?", 1)[0]


def fetch(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


@pytest.fixture
def alice(s3_media, db):
    """A user with an API client, created after the storage switched to the bucket."""
    user = make_user("alice")
    client = APIClient()
    client.force_authenticate(user)
    return user, client


# --- URLs ---------------------------------------------------------------------------------------
def test_an_uploaded_photo_is_in_the_bucket_behind_a_presigned_url(s3_media, moto_server, alice, media_root):
    _, api = alice
    data = image_bytes((40, 60), fmt="JPEG")
    response = api.post("/api/users/me/photos", {"image": SimpleUploadedFile("a.jpg", data)}, format="multipart")
    assert response.status_code == 201, response.content
    url = response.json()["url"]
    assert_presigned(url, moto_server.endpoint, s3_media.name)
    name = UserImage.objects.get(id=response.json()["id"]).image.name
    assert s3_media.keys() == {name}

    loaded = fetch(url)
    assert loaded.status_code == 200
    assert loaded.content[:3] == b"\xff\xd8\xff"  # the stored JPEG
    assert loaded.headers["Content-Type"] == "image/jpeg"
    # The bucket is private: without the signature the store refuses.
    assert fetch(unsigned(url)).status_code == 403
    assert files_in(media_root) == []


def test_the_url_expiry_is_media_url_expiry(s3_media, moto_server, settings, db):
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(expiry=60)}
    photo = make_photo(make_user())
    before = timezone.now().replace(microsecond=0)
    url = photo.image.url
    after = timezone.now()
    query = assert_presigned(url, moto_server.endpoint, s3_media.name, expiry=60)
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= after  # signed when made: valid until then + 60 s


def test_a_job_runs_on_the_bucket_and_its_images_load_through_presigned_urls(
    s3_media, moto_server, alice, media_root, settings
):
    user, api = alice
    photo = make_photo(user)
    top, bottom = make_item("top"), make_item("bottom")
    job = run_now(start_job(user, photo, top, bottom))
    assert job.status == "completed", job.error_code
    stored = {row.image.name for row in job.images.all()}
    assert stored <= s3_media.keys()
    assert all(name.startswith("results/") for name in stored)

    data = api.get(f"/api/virtual-fitting/{job.id}").json()
    urls = [step["imageUrl"] for step in data["steps"]] + [data["resultImageUrl"]]
    for url in urls:
        assert_presigned(url, moto_server.endpoint, s3_media.name)
        loaded = fetch(url)
        assert loaded.status_code == 200
        assert loaded.content[:3] == b"\xff\xd8\xff"
        assert fetch(unsigned(url)).status_code == 403
    for item in api.get("/api/items").json():
        assert_presigned(item["imageUrl"], moto_server.endpoint, s3_media.name)
        assert fetch(item["imageUrl"]).status_code == 200
    # Nothing of it on local disk.
    assert files_in(media_root) == []
    assert files_in(settings.MEDIA_ROOT) == []


# --- matching a URL sent back ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://127.0.0.1:9000/media-bucket/photos/ab12.jpg?X-Amz-Signature=f00&X-Amz-Expires=900", "photos/ab12.jpg"),
        ("https://media-bucket.s3.eu-west-1.amazonaws.com/photos/ab12.jpg?X-Amz-Signature=f00", "photos/ab12.jpg"),
        ("https://minio.internal/photos/photos/ab12.jpg", "photos/ab12.jpg"),  # a bucket named like a directory
        ("http://testserver/media/results/cd34.jpg", "results/cd34.jpg"),
        ("/media/items/ef56.png", "items/ef56.png"),
        ("/media/photos/ab%31%32.jpg", "photos/ab12.jpg"),
        ("https://store/bucket/exports/ab12.jpg", None),  # not a media directory
        ("https://store/bucket/photos/..", None),
        ("ab12.jpg", None),
        ("", None),
    ],
)
def test_media_name_is_the_object_key_whatever_the_host_style_or_signature(url, name):
    assert media_name(url) == name


def start(api, photo_url: str, item, image_url: str | None = None):
    entry = {"itemId": item.id, "category": item.category}
    if image_url is not None:
        entry["imageUrl"] = image_url
    return api.post("/api/virtual-fitting", {"userPhotoUrl": photo_url, "items": [entry]}, format="json")


def test_user_photo_url_matches_on_the_object_key_with_or_without_the_signature(s3_media, alice):
    user, api = alice
    photo = make_photo(user)
    item = make_item("top")
    signed = photo.image.url
    assert "X-Amz-Signature=" in signed
    for url in (signed, unsigned(signed)):
        response = start(api, url, item)
        assert response.status_code == 202, response.content
        assert FittingResult.objects.get(id=response.json()["jobId"]).user_image_id == photo.id


def test_another_users_presigned_photo_url_is_still_refused(s3_media, alice):
    _, api = alice
    theirs = make_photo(make_user("bob"))
    item = make_item("top")
    for url in (theirs.image.url, unsigned(theirs.image.url)):
        response = start(api, url, item)
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "PHOTO_REQUIRED"
    assert not FittingResult.objects.exists()


def test_a_garment_image_url_matches_on_the_object_key(s3_media, alice):
    user, api = alice
    photo = make_photo(user)
    top, other = make_item("top"), make_item("top")
    listed = {i["id"]: i["imageUrl"] for i in api.get("/api/items").json()}
    assert start(api, photo.image.url, top, image_url=listed[top.id]).status_code == 202
    assert start(api, photo.image.url, top, image_url=unsigned(listed[top.id])).status_code == 202
    response = start(api, photo.image.url, top, image_url=listed[other.id])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ITEM_ID"


# --- erasure and retention on the bucket ----------------------------------------------------------
def test_deleting_a_job_or_a_photo_removes_their_objects(s3_media, alice, django_capture_on_commit_callbacks):
    user, api = alice
    photo = make_photo(user)
    top = make_item("top")
    job = run_now(start_job(user, photo, top))
    results = {row.image.name for row in job.images.all()}
    assert results and results <= s3_media.keys()
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/virtual-fitting/{job.id}").status_code == 204
    assert s3_media.keys() == {photo.image.name, top.image.name}
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/users/me/photos/{photo.id}").status_code == 204
    assert s3_media.keys() == {top.image.name}


def test_the_orphan_sweep_lists_and_ages_objects_in_the_bucket(s3_media, alice):
    user, _ = alice
    photo = make_photo(user)
    top = make_item("top")
    job = run_now(start_job(user, photo, top))
    named = {photo.image.name, top.image.name, *(row.image.name for row in job.images.all())}
    orphans = {"photos/crashed-upload.jpg", "results/crashed-step.jpg", "results/nested/left.jpg"}
    for key in [*orphans, "exports/not-ours.jpg"]:
        s3_media.put(key)

    # Objects just written are younger than the sweep's minimum age: they stay.
    out = StringIO()
    call_command("retention_purge", stdout=out)
    assert "deleted 0 orphan file(s)" in out.getvalue()
    assert s3_media.keys() == named | orphans | {"exports/not-ours.jpg"}

    # moto cannot date an object back: a cut-off just after now makes every object old enough.
    later = timezone.now() + timedelta(seconds=1)
    assert files_delete_orphans(older_than=later, dry_run=True) == len(orphans)
    assert files_delete_orphans(older_than=later) == len(orphans)
    assert s3_media.keys() == named | {"exports/not-ours.jpg"}


# --- settings -----------------------------------------------------------------------------------
def manage(*args, settings_module="config.settings.production", **env):
    """``manage.py`` in a fresh process: this machine's DJANGO_*, AWS_* and MEDIA_* left out."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AWS_", "MEDIA_", "SERVE_"))}
    environment.update(DJANGO_SETTINGS_MODULE=settings_module, **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


S3_ENV = {
    "MEDIA_STORAGE": "s3",
    "AWS_STORAGE_BUCKET_NAME": "fitting-media",
    "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_S3_REGION_NAME": "us-east-1",
}


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        ({"AWS_STORAGE_BUCKET_NAME": ""}, "AWS_STORAGE_BUCKET_NAME must be set"),
        (
            {"AWS_STORAGE_BUCKET_NAME": "Media_Bucket"},
            "AWS_STORAGE_BUCKET_NAME is not a valid bucket name: 'Media_Bucket'",
        ),
        (
            {"AWS_S3_ENDPOINT_URL": "minio:9000"},
            "AWS_S3_ENDPOINT_URL must be an http:// or https:// URL, not 'minio:9000'",
        ),
        (
            {"AWS_SECRET_ACCESS_KEY": ""},
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together (or neither, for a role)",
        ),
        ({"MEDIA_URL_EXPIRY": "0"}, "MEDIA_URL_EXPIRY must be between 1 and 604800 seconds, not 0"),
        ({"MEDIA_STORAGE": "gcs"}, "MEDIA_STORAGE must be 'local' or 's3', not 'gcs'"),
        (
            {"SERVE_MEDIA": "true"},
            "SERVE_MEDIA serves local files: with MEDIA_STORAGE=s3 the bucket serves media, unset it",
        ),
    ],
)
def test_a_wrong_s3_setting_fails_at_start_in_one_line(changes, line):
    result = manage("check", **PRODUCTION, **{**S3_ENV, **changes})
    assert result.returncode != 0
    assert result.stderr == f"configuration error: {line}\n"


def test_a_complete_s3_configuration_passes_the_deploy_check(tmp_path):
    database = f"sqlite:///{tmp_path / 'db'}"
    redis = "redis://redis.internal:6379/0"  # the rates' shared counters (core.W001); named, not reached
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", DATABASE_URL=database, REDIS_URL=redis, **PRODUCTION, **S3_ENV
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("storage", "mounted"), [("local", True), ("s3", False)])
def test_the_apps_media_view_is_mounted_only_for_local_files(tmp_path, storage, mounted):
    result = manage(
        "shell",
        "-c",
        "from django.urls import Resolver404, resolve\n"
        "try:\n    print('VIEW', resolve('/media/photos/x.jpg').func.__name__)\n"
        "except Resolver404:\n    print('VIEW none')\n",
        settings_module="config.settings.local",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db'}",
        **{**S3_ENV, "MEDIA_STORAGE": storage},
    )
    assert result.returncode == 0, result.stderr
    assert ("VIEW serve_media" if mounted else "VIEW none") in result.stdout


def test_a_thumbnail_is_kept_in_the_bucket_and_deleted_with_its_image(
    s3_media, alice, client, django_capture_on_commit_callbacks
):
    user, api = alice
    photo = make_photo(user, size=(800, 1000))
    client.force_login(user)
    first = client.get(f"/thumbs/{photo.image.name}")
    assert first.status_code == 200
    rendition = f"thumbs/{photo.image.name}"
    assert s3_media.keys() == {photo.image.name, rendition}
    s3_media.put(rendition, b"stored rendition")  # served from the bucket from now on
    assert b"".join(client.get(f"/thumbs/{photo.image.name}")) == b"stored rendition"
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/users/me/photos/{photo.id}").status_code == 204
    assert s3_media.keys() == set()
