"""Factories for tests: real image files, real rows."""

from __future__ import annotations

import io
import itertools

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from fitting import images
from fitting.models import Item
from users.models import UserImage

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


def make_photo(owner, size=(64, 96), color=(200, 180, 160)) -> UserImage:
    data = image_bytes(size, color, fmt="JPEG")
    photo = UserImage(owner=owner, width=size[0], height=size[1], content_hash=images.sha256_hex(data))
    photo.image.save("photo.jpg", ContentFile(data), save=False)
    photo.save()
    return photo


def make_item(category: str = "top", name: str | None = None, color=(30, 40, 120), active: bool = True) -> Item:
    data = image_bytes((48, 48), color)
    item = Item(
        name=name or f"{category} {next(_counter)}",
        category=category,
        is_active=active,
        content_hash=images.sha256_hex(data),
    )
    item.image.save("item.png", ContentFile(data), save=False)
    item.save()
    return item
