"""Small renditions (/thumbs/<name>): small, and exactly as private as the image."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission
from PIL import Image

from core.media import THUMBNAIL_MAX_SIDE
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
