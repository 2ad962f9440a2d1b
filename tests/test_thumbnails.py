"""Small renditions (/thumbs/<name>): small, exactly as private as the image, made once and
kept beside it until it is deleted; anonymous requests are rate-limited."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone
from PIL import Image

from core.files import files_delete_orphans
from core.media import THUMBNAIL_DIRECTORY, THUMBNAIL_MAX_SIDE
from fitting.models import Item
from tests.factories import make_item, make_photo, make_user


def size_of(response) -> tuple[int, int]:
    return Image.open(io.BytesIO(b"".join(response))).size


@pytest.fixture
def big_photo(user):
    return make_photo(user, size=(1500, 2000))


def test_the_owner_gets_a_small_jpeg_of_a_large_photo(client, user, big_photo):
    assert max(Image.open(big_photo.image.path).size) > 4 * THUMBNAIL_MAX_SIDE
    client.force_login(user)
    response = client.get(f"/thumbs/{big_photo.image.name}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, max-age=3600"
    width, height = size_of(response)
    assert max(width, height) == THUMBNAIL_MAX_SIDE
    assert abs(width / height - 1500 / 2000) < 0.02
    assert len(response.content) < 30_000


def test_a_photo_thumbnail_is_refused_to_whoever_may_not_see_the_photo(client, other_user, big_photo):
    url = f"/thumbs/{big_photo.image.name}"
    assert client.get(url).status_code == 404  # anonymous
    client.force_login(other_user)
    assert client.get(url).status_code == 404
    client.force_login(make_user("staff-no-perm", is_staff=True))
    assert client.get(url).status_code == 404
    viewer = make_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_userimage"))
    client.force_login(viewer)
    assert client.get(url).status_code == 200


def test_catalogue_thumbnails_are_public(client, db):
    item = make_item("top")
    response = client.get(f"/thumbs/{item.image.name}")
    assert response.status_code == 200
    assert response["Cache-Control"] == "max-age=86400"


@pytest.mark.parametrize("path", ["../secret", "photos/../items/x.png", "nothing/x.png", "items/missing.png"])
def test_tricks_and_missing_files_are_not_found(client, db, path):
    assert client.get(f"/thumbs/{path}").status_code == 404


# --- made once, kept beside the image, deleted with it ------------------------------------------
def stored_rendition(media_root, name: str):
    return media_root / THUMBNAIL_DIRECTORY / name


def test_a_rendition_is_made_once_and_then_served_from_the_storage(client, media_root, db):
    item = make_item("top")
    first = client.get(f"/thumbs/{item.image.name}")
    assert first.status_code == 200
    kept = stored_rendition(media_root, item.image.name)
    assert kept.read_bytes() == b"".join(first)
    # Rendered again, it would come out as before; what is stored is what is served.
    marker = io.BytesIO()
    Image.new("RGB", (10, 10), (255, 0, 0)).save(marker, "JPEG")
    kept.write_bytes(marker.getvalue())
    second = client.get(f"/thumbs/{item.image.name}")
    assert b"".join(second) == marker.getvalue()
    assert second["Content-Type"] == "image/jpeg"


def test_a_photos_rendition_is_deleted_with_the_photo(
    client, media_root, user, big_photo, django_capture_on_commit_callbacks
):
    client.force_login(user)
    assert client.get(f"/thumbs/{big_photo.image.name}").status_code == 200
    kept = stored_rendition(media_root, big_photo.image.name)
    assert kept.exists()
    assert (
        client.get(f"/media/{THUMBNAIL_DIRECTORY}/{big_photo.image.name}").status_code == 404
    )  # never served directly
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/users/me/photos/{big_photo.id}").status_code == 204
    assert not (media_root / big_photo.image.name).exists()
    assert not kept.exists()


def test_the_orphan_sweep_removes_renditions_whose_image_is_gone(client, media_root, db):
    kept_item, gone_item = make_item("top"), make_item("bottom")
    for item in (kept_item, gone_item):
        assert client.get(f"/thumbs/{item.image.name}").status_code == 200
    Item.objects.filter(id=gone_item.id).delete()  # the row only: its files are orphans now
    later = timezone.now() + timedelta(seconds=5)
    assert files_delete_orphans(older_than=later) == 2  # the image and its rendition
    assert stored_rendition(media_root, kept_item.image.name).exists()
    assert not stored_rendition(media_root, gone_item.image.name).exists()


# --- anonymous requests are rate-limited ---------------------------------------------------------
def test_anonymous_thumbnail_requests_are_throttled_per_address(client, user, settings, db):
    settings.THUMBNAIL_ANON_RATE = "3/minute"
    cache.clear()
    item = make_item("top")
    url = f"/thumbs/{item.image.name}"
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 200]
    throttled = client.get(url)
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "THROTTLED"
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert client.get(url, REMOTE_ADDR="10.1.2.3").status_code == 200  # another address has its own count
    client.force_login(user)  # signed-in users (the admin's pages) are not limited
    assert client.get(url).status_code == 200
