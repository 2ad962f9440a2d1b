"""Decode, normalise and encode images: the one place Pillow meets bytes.

Uploads and job inputs are decoded here once; EXIF orientation is applied so every
stored image is upright; byte and pixel limits stop decompression bombs before any
pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import warnings

from django.conf import settings
from PIL import Image, ImageOps
from pillow_heif import register_heif_opener

from fitting.errors import ImageInvalidError, ImageTooLargeError, ImageTooManyPixelsError

register_heif_opener()

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "HEIF", "MPO"}  # MPO: JPEGs from some phone cameras
# Step and final images: JPEG is ~10x faster to encode than PNG at this size and the
# results are photographs; nothing downstream needs alpha.
RESULT_FORMAT = "JPEG"
RESULT_EXTENSION = "jpg"
RESULT_QUALITY = 90


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, *, max_bytes: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Decode ``data`` into an upright RGB or RGBA image, or raise a coded error.

    The pixel count is checked from the header, before any pixel is decoded.
    """
    max_bytes = max_bytes or settings.UPLOAD_MAX_BYTES
    max_pixels = max_pixels or settings.UPLOAD_MAX_PIXELS
    if not data:
        raise ImageInvalidError()
    if len(data) > max_bytes:
        raise ImageTooLargeError()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise ImageInvalidError()
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooManyPixelsError()
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the pixels
    except (ImageInvalidError, ImageTooManyPixelsError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixelsError() from exc
    except Exception as exc:  # Pillow raises many types for corrupt input
        raise ImageInvalidError() from exc
    if width == 0 or height == 0:
        raise ImageInvalidError()
    wanted = "RGBA" if _has_alpha(image) else "RGB"
    return image if image.mode == wanted else image.convert(wanted)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def to_canvas(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bring an engine's output to the canvas size (the person photo's), as RGB.

    Same aspect ratio (within 1%): a plain resize. Otherwise cover and centre-crop, so
    the person is never stretched.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size == size:
        return image
    w, h = image.size
    if abs((w / h) / (size[0] / size[1]) - 1) < 0.01:
        return image.resize(size, Image.Resampling.LANCZOS)
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)


def blank_canvas(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, (255, 255, 255))


def encode_result(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, RESULT_FORMAT, quality=RESULT_QUALITY)
    return buffer.getvalue()


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def encode_upload(image: Image.Image) -> tuple[bytes, str]:
    """Re-encode an upload upright, stripping metadata: PNG when it has alpha, else JPEG."""
    buffer = io.BytesIO()
    if image.mode == "RGBA":
        image.save(buffer, "PNG", optimize=False)
        return buffer.getvalue(), "png"
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), "jpg"
