"""Decode, normalise and encode images: the one place Pillow meets bytes.

Uploads and job inputs are decoded here once; EXIF orientation is applied so every
stored image is upright; byte and pixel limits stop decompression bombs before any
pixel is decoded.

Memory: a few KB of PNG, WebP or HEIC can describe 40 MP, which Pillow would decode at full
size (160 MB of RGBA, twice that for WebP). With ``max_side`` nothing is decoded at full
size in this process: a JPEG is decoded at 1/2, 1/4 or 1/8 scale (``Image.draft``), a PNG
or WebP is shrunk while it loads by libvips (WebP's scaled decoding, PNG streamed in
strips), and a HEIC, which only decodes whole, is decoded in a short-lived child process
that sends back the reduced pixels. At most IMAGE_DECODE_CONCURRENCY large decodes run at
once per process; the others wait their turn.

Metadata: whatever a file carries besides its pixels (EXIF, XMP, IPTC, comments, ICC
profiles) is dropped on decode, after an ICC profile has been used to bring the pixels to
sRGB, so nothing encoded from a decoded image (a stored photo, a thumbnail, a result, what
an engine is sent) can carry it on.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import re
import subprocess
import sys
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import pyvips
from django.conf import settings
from PIL import Image, ImageCms, ImageOps
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
# An image of more pixels than this is a "large" decode: it takes one of the process's
# IMAGE_DECODE_CONCURRENCY slots. Smaller ones cost at most ~17 MB and never wait.
LARGE_DECODE_PIXELS = 2048 * 2048
# libvips: no operation cache (it would keep decoded images alive) and one worker thread
# per pipeline, which keeps a streamed PNG's buffers to a few strips.
pyvips.cache_set_max(0)
pyvips.concurrency_set(1)


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
            with _decode_slot(width * height):
                if max_side and max(width, height) > max_side and image.format in ("PNG", "WEBP"):
                    image = _decode_shrunk_by_vips(data, max_side)
                elif max_side and max(width, height) > max_side and image.format == "HEIF":
                    image = _decode_in_child(data, max_side)
                else:
                    image = _decode_plain_png(image, data) or _decode_with_pillow(image, max_side)
    except (ImageInvalidError, ImageTooManyPixelsError, ImageAspectRatioError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooManyPixelsError() from exc
    except Exception as exc:  # Pillow and libvips raise many types for corrupt input
        raise ImageInvalidError() from exc
    return image


def _decode_with_pillow(image: Image.Image, max_side: int | None) -> Image.Image:
    """Decode an opened file upright, in sRGB, without metadata; a JPEG at reduced scale."""
    width, height = image.size
    if max_side and max(width, height) > max_side:
        image.draft(None, fit_size((width, height), max_side, rounding=math.ceil))  # JPEG only
    image.load()
    ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the pixels
    wanted = "RGBA" if _has_alpha(image) else "RGB"
    image = _to_srgb(image, "RGB" if image.mode == "CMYK" else image.mode)
    if image.mode not in ("RGB", "RGBA", "L"):  # palette and others: resample in colour
        image = image.convert(wanted)
    if max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # never enlarges
    image = image if image.mode == wanted else image.convert(wanted)
    image.info = {}  # EXIF, XMP, IPTC, comments, the (applied) ICC profile: none goes further
    return image


# What makes Pillow's decode change a PNG's pixels: an ICC profile (iCCP), EXIF (eXIf, or
# ImageMagick's "Raw profile type exif" text chunk) and XMP, whose orientation is applied.
_PNG_PIXEL_CHUNKS = (b"iCCP", b"eXIf")
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_PNG_PIXEL_KEYWORDS = (b"Raw profile type", b"XML:com.adobe.xmp")


def _png_has_pixel_metadata(data: bytes) -> bool:
    """Whether any chunk of the PNG, before or after the pixels, is one Pillow's path acts on.

    Walks the chunk headers (a few hundred for a megapixel answer), never the compressed data.
    """
    position = 8  # the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind in _PNG_PIXEL_CHUNKS:
            return True
        if kind in _PNG_TEXT_CHUNKS and data[position + 8 : position + 8 + length].startswith(_PNG_PIXEL_KEYWORDS):
            return True
        if kind == b"IEND":
            return False
        position += 12 + length
    return True  # cut short: let Pillow judge it


def _decode_plain_png(image: Image.Image, data: bytes) -> Image.Image | None:
    """A plain 8-bit RGB or RGBA PNG decoded by libvips (about 30% faster than Pillow, the same
    pixels); None for any other PNG, which Pillow decodes.

    An engine's answer is such a PNG, decoded at every step. Plain means nothing Pillow's path
    would act on: no ICC profile, no EXIF or XMP (an orientation), no transparency key, no
    palette or 16-bit samples.
    """
    if image.format != "PNG" or image.mode not in ("RGB", "RGBA") or "transparency" in image.info:
        return None
    if _png_has_pixel_metadata(data):
        return None
    vips = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
    bands = 4 if image.mode == "RGBA" else 3
    if vips.bands != bands or vips.format != "uchar" or (vips.width, vips.height) != image.size:
        return None
    return Image.frombytes(image.mode, image.size, vips.write_to_memory())


def _to_srgb(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` with its embedded ICC profile applied (sRGB); unchanged without one."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.profileToProfile(image, source, _srgb_profile(), outputMode=mode) or image
    except ImageCms.PyCMSError:  # a broken profile, or one for other pixels (grey on RGB): not applied
        return image


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _decode_shrunk_by_vips(data: bytes, max_side: int) -> Image.Image:
    """A PNG or WebP brought to ``max_side`` while it loads (libvips), upright, sRGB, no metadata."""
    image = pyvips.Image.thumbnail_buffer(
        data, max_side, height=max_side, size="down", export_profile="srgb", fail_on="error"
    )
    if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.bands in (1, 2):  # grey, grey and alpha
        image = image.colourspace("srgb")
    mode = "RGBA" if image.bands == 4 else "RGB"
    if image.bands not in (3, 4):
        raise ImageInvalidError()
    return Image.frombytes(mode, (image.width, image.height), image.write_to_memory())


def _decode_in_child(data: bytes, max_side: int) -> Image.Image:
    """Decode in a child process (``python -m core.images``) and take back the reduced pixels.

    For a format that decodes only at full size (HEIC): the full-size buffers live and die
    in the child, so this process holds only the reduced image.
    """
    result = subprocess.run(  # noqa: S603 (our own interpreter and module, no shell)
        [sys.executable, "-m", "core.images", str(max_side)],
        input=data,
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=settings.IMAGE_DECODE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise ImageInvalidError()
    header, _, pixels = result.stdout.partition(b"\n")
    mode, width, height = header.decode().split()
    return Image.frombytes(mode, (int(width), int(height)), pixels)


def _child_main() -> None:
    max_side = int(sys.argv[1])
    image = _decode_with_pillow(Image.open(io.BytesIO(sys.stdin.buffer.read())), max_side)
    sys.stdout.buffer.write(f"{image.mode} {image.width} {image.height}\n".encode())
    sys.stdout.buffer.write(image.tobytes())


_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


@contextmanager
def _decode_slot(pixels: int):
    """Hold one of the process's IMAGE_DECODE_CONCURRENCY slots while a large image decodes."""
    global _slots
    if pixels <= LARGE_DECODE_PIXELS:
        yield
        return
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(settings.IMAGE_DECODE_CONCURRENCY)
    with _slots:
        yield


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
    the person is never stretched. Enlarging (an image model draws ~1 MP; photos are up to
    2048 px) is bicubic through OpenCV (``_enlarge``); shrinking keeps Pillow's LANCZOS.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size == size:
        return image
    w, h = image.size
    if abs((w / h) / (size[0] / size[1]) - 1) >= 0.01:  # cover: the centre at the canvas's ratio
        ratio = size[0] / size[1]
        if w / h > ratio:
            crop_w = round(h * ratio)
            image = image.crop(((w - crop_w) // 2, 0, (w - crop_w) // 2 + crop_w, h))
        else:
            crop_h = round(w / ratio)
            image = image.crop((0, (h - crop_h) // 2, w, (h - crop_h) // 2 + crop_h))
        w, h = image.size
    if w <= size[0] and h <= size[1]:
        return _enlarge(image, size)
    return image.resize(size, Image.Resampling.LANCZOS)


def _enlarge(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bicubic enlarging with OpenCV: 2.4 ms against Pillow's 20.6 ms BICUBIC at 832x1248 ->
    1024x1536 (SIMD, both cores), 54.6 dB PSNR from Pillow's (bench/README.md §1). OpenCV is
    imported here, in the worker that fits answers, not by every web process."""
    import cv2
    import numpy

    return Image.fromarray(cv2.resize(numpy.asarray(image), size, interpolation=cv2.INTER_CUBIC))


def blank_canvas(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, (255, 255, 255))


def encode_result(image: Image.Image) -> bytes:
    """A step's image as stored (JPEG). Encoded once: the bytes are kept on ``image`` (see
    ``result_bytes``), so sending the same image on (the next step, the message) re-encodes nothing."""
    stored = result_bytes(image)
    if stored is not None:
        return stored
    buffer = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buffer, RESULT_FORMAT, quality=RESULT_QUALITY)
    data = buffer.getvalue()
    if image.mode == "RGB":
        setattr(image, _RESULT_BYTES, (image.mode, image.size, data))
    return data


# The attribute encode_result keeps its bytes in; an attribute, not ``info``: Pillow copies
# ``info`` to every image derived from this one (a resize), which are other pixels.
_RESULT_BYTES = "_fitting_result_bytes"


def keep_source_jpeg(image: Image.Image, data: bytes) -> Image.Image:
    """``image`` with ``data`` kept as its encoding (see ``result_bytes``) when ``data`` is a plain
    JPEG that decodes to exactly ``image`` and carries nothing but its pixels (``_only_pixels``):
    same size, RGB, no comment, EXIF (orientation included), XMP, IPTC or ICC profile.

    A photo stored now is such a JPEG (re-encoded upright, metadata stripped, at most
    PHOTO_MAX_SIDE), and so is a stored step image: sending them to an engine as stored spares a
    decode-encode round trip and a generation of JPEG loss. Anything else (a photo stored before
    uploads were stripped of every block, a file put in storage by other means) is encoded again
    from its decoded pixels, which carry no metadata.
    """
    if image.mode != "RGB" or not _only_pixels(data):
        return image
    try:
        source = Image.open(io.BytesIO(data))
        plain = source.format == "JPEG" and source.mode == "RGB" and source.size == image.size
    except Exception:  # it decoded once already: any doubt keeps nothing
        return image
    if plain:
        setattr(image, _RESULT_BYTES, (image.mode, image.size, data))
    return image


# In a scan's coded data 0xFF is followed by 0x00 (a stuffed byte), a restart marker (0xD0-0xD7)
# or another 0xFF (fill); anything else is a marker that ends the scan.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _only_pixels(data: bytes) -> bool:
    """True when the JPEG ``data`` holds nothing a decoder drops: before the image data no
    segment but tables, the frame header and JFIF's APP0 (no other APPn, no COM), then a single
    scan and the end marker as the file's last bytes (nothing appended, no second image).

    Pillow's ``applist`` lists the APPn and COM segments, but not where the image data ends,
    so the segments are walked here. Any irregularity answers False (the image is re-encoded).
    """
    if data[:2] != b"\xff\xd8":
        return False
    position = 2
    try:
        while True:
            if data[position] != 0xFF:
                return False
            marker = data[position + 1]
            if marker == 0xFF:  # a fill byte before a marker
                position += 1
                continue
            length = int.from_bytes(data[position + 2 : position + 4], "big")
            body = data[position + 4 : position + 2 + length]
            if marker == 0xFE or 0xE1 <= marker <= 0xEF or (marker == 0xE0 and not body.startswith(b"JFIF\x00")):
                return False
            position += 2 + length
            if marker == 0xDA:  # start of scan: the coded data follows
                break
    except IndexError:
        return False
    end = _SCAN_END.search(data, position)
    return end is not None and end.group() == b"\xff\xd9" and end.end() == len(data)


class DecodedImages:
    """A bounded LRU of decoded images, keyed by the bytes' SHA-256, their length and the
    decode arguments: the same catalogue image is decoded once per process, not once per job.

    ``decode`` returns the cached image itself: callers treat it as read-only (the pipeline
    never changes an input in place). Holds at most ``budget`` bytes of pixels (width × height ×
    bands); an image larger than that is decoded and not kept. 0 keeps nothing.
    """

    def __init__(self) -> None:
        self._images: OrderedDict[tuple, Image.Image] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    @staticmethod
    def weight(image: Image.Image) -> int:
        return image.width * image.height * len(image.getbands())

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._images)

    def decode(self, data: bytes, *, budget: int, **options) -> Image.Image:
        """``decode(data, **options)``, from the cache when these bytes were decoded so before.

        ``budget``: the most bytes of pixels the cache may hold (read at each call: a setting).
        """
        if budget <= 0:
            return decode(data, **options)
        key = (sha256_hex(data), len(data), tuple(sorted(options.items())))
        with self._lock:
            image = self._images.get(key)
            if image is not None:
                self._images.move_to_end(key)
                return image
        image = decode(data, **options)
        weight = self.weight(image)
        if weight > budget:
            return image
        with self._lock:
            if key not in self._images:
                self._images[key] = image
                self._held += weight
            while self._held > budget:
                _, dropped = self._images.popitem(last=False)
                self._held -= self.weight(dropped)
        return image


def result_bytes(image: Image.Image) -> bytes | None:
    """The JPEG ``encode_result`` made of this very image object (or ``keep_source_jpeg`` kept), or None.

    The pipeline never changes an image in place once it is encoded (every operation makes a
    new one); mode and size are checked all the same.
    """
    kept = getattr(image, _RESULT_BYTES, None)
    return kept[2] if kept and kept[:2] == (image.mode, image.size) else None


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


if __name__ == "__main__":  # the child of _decode_in_child
    register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    _child_main()
