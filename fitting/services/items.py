"""Writes of the catalogue: an item with its checked, hashed image."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files import File

from core import images
from core.files import file_delete_quietly, file_store_new
from fitting.models import Item


def item_image_check(data: bytes) -> str:
    """Check that ``data`` is an acceptable garment image (a coded error if not); its content hash."""
    images.decode(data, max_side=settings.PHOTO_MAX_SIDE)  # as a job decodes it: never at full size
    return images.sha256_hex(data)


def item_save(*, item: Item, image: File | None = None) -> Item:
    """Create or update a catalogue item; a new ``image`` is checked, hashed and stored first.

    The content hash is part of the result-cache key, so it always follows the stored file.
    A row that cannot be saved takes its new file with it.
    """
    if image is None:
        item.save()
        return item
    image.seek(0)
    data = image.read()
    item.content_hash = item_image_check(data)
    file_store_new(item.image, Path(image.name).name, data)
    try:
        item.save()
    except BaseException:
        file_delete_quietly(item.image.storage, item.image.name)
        raise
    return item
