"""core.images.DecodedImages (the worker's cache of decoded catalogue images) and
keep_source_jpeg (a stored JPEG sent on as stored): issue 27."""

from __future__ import annotations

import io
import math

import pytest
from PIL import Image, ImageCms

from core import images
from fitting.engines.gemini import encode_input

LIMITS = {"max_bytes": 10_000_000, "max_side": 2048}


def png(colour: tuple[int, int, int], size=(60, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((90, 120)).save(buffer, "JPEG", quality=85, **options)
    return buffer.getvalue()


def test_a_cached_decode_has_the_same_pixels_and_is_decoded_once():
    cache = images.DecodedImages()
    data = png((10, 120, 200))
    first = cache.decode(data, budget=1_000_000, **LIMITS)
    assert first.tobytes() == images.decode(data, **LIMITS).tobytes()
    assert (first.mode, first.size) == ("RGB", (60, 40))
    assert cache.decode(data, budget=1_000_000, **LIMITS) is first
    # Other decode arguments are another entry: a smaller working size is other pixels.
    smaller = cache.decode(data, budget=1_000_000, max_bytes=10_000_000, max_side=30)
    assert smaller.size == (30, 20) and smaller is not first
    assert len(cache) == 2


def test_the_cache_is_bounded_by_its_budget_least_recently_used_first_out():
    cache = images.DecodedImages()
    weight = 60 * 40 * 3
    budget = 2 * weight + 100  # room for two
    a, b, c = png((1, 2, 3)), png((4, 5, 6)), png((7, 8, 9))
    kept_a = cache.decode(a, budget=budget, **LIMITS)
    cache.decode(b, budget=budget, **LIMITS)
    assert cache.decode(a, budget=budget, **LIMITS) is kept_a  # a is now the most recently used
    cache.decode(c, budget=budget, **LIMITS)  # b goes
    assert len(cache) == 2 and cache.held_bytes == 2 * weight <= budget
    assert cache.decode(a, budget=budget, **LIMITS) is kept_a
    # An image larger than the whole budget is decoded, not kept; a budget of 0 keeps nothing.
    big = cache.decode(png((0, 0, 0), size=(200, 200)), budget=budget, **LIMITS)
    assert big.size == (200, 200) and len(cache) == 2
    off = images.DecodedImages()
    assert off.decode(a, budget=0, **LIMITS).tobytes() == kept_a.tobytes() and len(off) == 0


@pytest.mark.parametrize("made_by", ["pillow", "encode_upload", "encode_result"])
def test_a_plain_stored_jpeg_is_sent_as_stored(made_by):
    picture = images.decode(jpeg(), **LIMITS)
    data = {
        "pillow": jpeg(),
        "encode_upload": images.encode_upload(picture)[0],  # a photo as stored
        "encode_result": images.encode_result(picture.copy()),  # a step image as stored
    }[made_by]
    image = images.keep_source_jpeg(images.decode(data, **LIMITS), data)
    assert images.result_bytes(image) == data
    assert encode_input(image) == (data, "image/jpeg")


@pytest.mark.parametrize("what", ["orientation", "icc", "shrunk"])
def test_a_jpeg_that_decoding_changed_is_encoded_again(what):
    if what == "orientation":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotated: the decoded pixels are turned
        data, limits = jpeg(exif=exif.tobytes()), LIMITS
    elif what == "icc":
        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
        data, limits = jpeg(icc_profile=profile), LIMITS
    else:
        data, limits = jpeg(), {**LIMITS, "max_side": 60}
    image = images.keep_source_jpeg(images.decode(data, **limits), data)
    assert images.result_bytes(image) is None
    sent, mime = encode_input(image)
    assert sent != data and mime == "image/jpeg"


def with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """``data`` (a JPEG) with one more segment right after SOI."""
    segment = bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
    return data[:2] + segment + data[2:]


@pytest.mark.parametrize(
    ("marker", "payload"),
    [
        (0xFE, b"call 010-1234-5678"),  # COM
        (0xE1, b"Exif\x00\x00" + Image.Exif().tobytes()),  # APP1 EXIF, even with no orientation
        (0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>Seoul</x:xmpmeta>"),  # APP1 XMP
        (0xED, b"Photoshop 3.0\x00"),  # APP13
    ],
)
def test_a_jpeg_with_metadata_is_never_sent_or_kept_as_is(marker, payload):
    data = with_segment(jpeg(), marker, payload)
    image = images.keep_source_jpeg(images.decode(data, **LIMITS), data)
    assert images.result_bytes(image) is None
    sent, _mime = encode_input(image)
    assert payload not in sent and images.encode_result(image) != data


def test_a_jpeg_with_bytes_after_its_end_is_never_sent_as_is():
    data = jpeg() + b"PK\x03\x04 a zip appended"  # a polyglot stored before uploads were re-encoded
    image = images.keep_source_jpeg(images.decode(data, **LIMITS), data)
    assert images.result_bytes(image) is None
    assert b"PK\x03\x04" not in encode_input(image)[0]


PHONE = b"010-1234-5678"


@pytest.mark.parametrize("what", ["jfxx", "second image"])
def test_an_app0_not_jfif_or_a_second_image_after_the_end_is_never_sent_as_is(what):
    if what == "jfxx":  # an APP0 that is not JFIF's header
        data = with_segment(jpeg(), 0xE0, b"JFXX\x00\x13" + PHONE)
    else:  # a whole JPEG after the end marker, as phones append previews (it ends in FFD9 too)
        data = jpeg() + jpeg(comment=PHONE)
    assert PHONE in data
    image = images.keep_source_jpeg(images.decode(data, **LIMITS), data)
    assert images.result_bytes(image) is None
    sent, mime = encode_input(image)
    assert PHONE not in sent and mime == "image/jpeg"
    assert [marker for marker, _ in Image.open(io.BytesIO(sent)).applist] in ([], ["APP0"])


def psnr(a: Image.Image, b: Image.Image) -> float:
    import numpy

    error = ((numpy.asarray(a, dtype=float) - numpy.asarray(b, dtype=float)) ** 2).mean()
    return 10 * math.log10(255**2 / error)


def noisy(size) -> Image.Image:
    import numpy

    pixels = numpy.random.default_rng(5).integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=numpy.uint8)
    return Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)  # smooth, like a photo


def test_to_canvas_enlarges_as_pillows_bicubic_would():
    answer = noisy((832, 1248))
    fitted = images.to_canvas(answer, (1024, 1536))
    assert fitted.size == (1024, 1536) and fitted.mode == "RGB"
    assert psnr(fitted, answer.resize((1024, 1536), Image.Resampling.BICUBIC)) > 45


@pytest.mark.parametrize("answer_size", [(1000, 1000), (1248, 832), (500, 900)])
def test_to_canvas_covers_and_keeps_the_centre_of_another_ratio(answer_size):
    # A centre square of one colour on a field of another: after the fit the centre is still there.
    answer = Image.new("RGB", answer_size, (0, 0, 255))
    w, h = answer_size
    answer.paste((255, 0, 0), (w // 2 - 40, h // 2 - 40, w // 2 + 40, h // 2 + 40))
    fitted = images.to_canvas(answer, (600, 900))
    assert fitted.size == (600, 900)
    assert fitted.getpixel((300, 450)) == (255, 0, 0)
    corner = fitted.getpixel((2, 2))
    assert corner[2] > 200 and corner[0] < 50  # no stretching pulled the centre to the edge
