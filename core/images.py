"""Decode, normalise and encode images: the one place Pillow meets bytes.

Uploads and job inputs are decoded here once; EXIF orientation is applied so every
stored image is upright; byte and pixel limits stop decompression bombs before any
pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings

from django.conf import settings
from PIL import Image, ImageOps
from pillow_heif import register_heif_opener

from core.errors import ImageAspectRatioError, ImageInvalidError, ImageTooLargeError, ImageTooManyPixelsError

register_heif_opener()

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "HEIF", "MPO"}  # MPO: JPEGs from some phone cameras
# Step and final images: JPEG is ~10x faster to encode than PNG at this size and the
# results are photographs; nothing downstream needs alpha.
RESULT_FORMAT = "JPEG"
RESULT_EXTENSION = "jpg"
RESULT_QUALITY = 90
# Stored person photos: JPEG with 4:2:0 chroma, at the first quality of this ladder whose file
# takes at most PHOTO_BYTES_PER_PIXEL per pixel (a real photo: ~0.25 at 85; pure noise needs 50,
# binary noise 30, the last rung, which is kept whatever it weighs: ~0.4 per pixel).
PHOTO_QUALITIES = (85, 70, 50, 30)
PHOTO_BYTES_PER_PIXEL = 0.5
PHOTO_HEADER_BYTES = 4096  # a tiny photo's JPEG headers and tables: never a reason to lower quality
# A person photo whose long side is more than this many times its short side is refused: no
# person fits it, and a 70000x1 strip would shrink to a 2048x1 canvas.
PHOTO_MAX_ASPECT_RATIO = 10


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(
    data: bytes,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    max_side: int | None = None,
    max_aspect_ratio: float | None = None,
) -> Image.Image:
    """Decode ``data`` into an upright RGB or RGBA image, or raise a coded error.

    The pixel count (and the aspect ratio, if bounded) is checked from the header, before
    any pixel is decoded. With ``max_side`` the long side is brought down to at most that,
    never enlarged: a JPEG is decoded at 1/2, 1/4 or 1/8 scale when that still covers the
    size (``Image.draft``), so a 40 MP photo never becomes 40 MP of pixels in memory.
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
            if width == 0 or height == 0:
                raise ImageInvalidError()
            if width * height > max_pixels:
                raise ImageTooManyPixelsError()
            if max_aspect_ratio and max(width, height) > max_aspect_ratio * min(width, height):
                raise ImageAspectRatioError()
            if max_side and max(width, height) > max_side:
                image.draft(None, fit_size((width, height), max_side, rounding=math.ceil))  # JPEG only
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the pixels
            wanted = "RGBA" if _has_alpha(image) else "RGB"
            if image.mode not in ("RGB", "RGBA", "L"):  # palette and others: resample in colour
                image = image.convert(wanted)
            if max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # never enlarges
    except (ImageInvalidError, ImageTooManyPixelsError, ImageAspectRatioError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixelsError() from exc
    except Exception as exc:  # Pillow raises many types for corrupt input
        raise ImageInvalidError() from exc
    return image if image.mode == wanted else image.convert(wanted)


def fit_size(size: tuple[int, int], max_side: int, *, rounding=round) -> tuple[int, int]:
    """``size`` scaled so its long side is at most ``max_side`` (never enlarged, never 0)."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, rounding(width * scale)), max(1, rounding(height * scale))


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
    """Re-encode a person photo upright as a JPEG of bounded weight, stripping metadata.

    Transparency is flattened onto white (the pipeline works in RGB). The quality steps
    down PHOTO_QUALITIES until the file takes at most PHOTO_BYTES_PER_PIXEL per pixel, so
    a noisy picture cannot weigh more than about half a byte per pixel: with the long side
    at most PHOTO_MAX_SIDE (2048), a stored photo is at most ~2.1 MB.
    """
    if image.mode != "RGB":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A") if "A" in image.getbands() else None)
        image = flat
    budget = image.width * image.height * PHOTO_BYTES_PER_PIXEL + PHOTO_HEADER_BYTES
    for quality in PHOTO_QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, subsampling="4:2:0", optimize=True)
        if buffer.tell() <= budget:
            break
    return buffer.getvalue(), "jpg"
