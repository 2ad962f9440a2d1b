"""A plain PNG (an engine's answer) is decoded by libvips; the pixels are Pillow's, and a PNG with
anything Pillow's path acts on (orientation, ICC profile, transparency key) still goes that way."""

import io

import pytest
import pyvips
from PIL import Image

from core import images


def _noisy(mode: str, size=(320, 480)) -> Image.Image:
    return Image.frombytes(mode, size, bytes((i * 7919 + 13) % 251 for i in range(size[0] * size[1] * len(mode))))


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_plain_png_decodes_to_exactly_pillows_pixels(mode):
    data = _png(_noisy(mode))
    expected = Image.open(io.BytesIO(data))
    expected.load()
    decoded = images.decode(data)
    assert decoded.mode == mode and decoded.size == expected.size
    assert decoded.tobytes() == expected.tobytes()
    assert decoded.info == {}


def test_a_png_with_an_exif_orientation_is_turned_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    decoded = images.decode(_png(_noisy("RGB", (320, 480)), exif=exif.tobytes()))
    assert decoded.size == (480, 320)


def test_a_png_with_an_icc_profile_is_brought_to_srgb():
    # Display P3 (libvips' built-in copy): the same numbers are another, more saturated red.
    pixel = pyvips.Image.black(1, 1, bands=3).linear([1, 1, 1], [200, 40, 40]).cast("uchar").copy(interpretation="srgb")
    profile = pixel.icc_transform("p3", input_profile="srgb").get("icc-profile-data")
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    plain = images.decode(_png(source))
    with_profile = images.decode(_png(source, icc_profile=profile))
    assert plain.getpixel((5, 5)) == (200, 40, 40)
    assert with_profile.getpixel((5, 5)) != (200, 40, 40)  # the profile was applied


def test_an_rgb_png_with_a_transparency_key_keeps_pillows_mode():
    data = _png(_noisy("RGB", (64, 64)), transparency=(0, 0, 0))
    expected = Image.open(io.BytesIO(data))
    expected.load()
    decoded = images.decode(data)
    assert decoded.mode == "RGB"
    assert decoded.tobytes() == expected.convert("RGB").tobytes()
