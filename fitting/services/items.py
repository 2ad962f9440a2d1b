"""Writes of the catalogue: an item with its checked, hashed image."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.files import File

from core import images
from core.files import file_delete_quietly, file_store_new
from fitting.models import Item


def item_image_clean(data: bytes) -> tuple[bytes, str]:
    """The garment image as it is stored: checked (a coded error if not acceptable), upright,
    in sRGB, at most PHOTO_MAX_SIDE (as a job decodes it), with no metadata block left
    (EXIF, XMP, IPTC, comments, ICC): a PNG when it has transparency (a cut-out), else a
    JPEG. Returns the bytes and their file extension; the same input gives the same bytes.
    """
    image = images.decode(data, max_side=settings.PHOTO_MAX_SIDE)  # never at full size
    if "A" in image.getbands():
        return images.encode_png(image), ".png"
    return images.encode_result(image), f".{images.RESULT_EXTENSION}"


def item_image_check(data: bytes) -> str:
    """Check that ``data`` is an acceptable garment image (a coded error if not); the content
    hash of the image as it would be stored (what the result cache and the feed compare)."""
    return images.sha256_hex(item_image_clean(data)[0])


def item_save(*, item: Item, image: File | None = None) -> Item:
    """Create or update a catalogue item; a new ``image`` is checked, hashed and stored first.

    The content hash is part of the result-cache key, so it always follows the stored file.
    A row that cannot be saved takes its new file with it.
    """
    if image is None:
        item.save()
        return item
    image.seek(0)
    data, extension = item_image_clean(image.read())
    item.content_hash = images.sha256_hex(data)
    file_store_new(item.image, Path(image.name).stem + extension, data)
    try:
        item.save()
    except BaseException:
        file_delete_quietly(item.image.storage, item.image.name)
        raise
    return item
