"""No metadata goes further than the upload (issue 25, 7): not stored, not served, not sent.

A phone's JPEG carries a comment (COM), EXIF (with GPS), XMP, IPTC and an ICC profile, each
with something personal in it. The stored photo, its thumbnail, the job's result images and
the bytes the (fake) Gemini server receives carry none of them; the pixels are in sRGB.
"""

from __future__ import annotations

import base64
import io
import struct

import pytest
from PIL import Image, ImageCms

from core.media import thumbnail_url
from tests.factories import make_item, run_now, start_job
from users.services import photo_create

PHONE = b"+82-10-5555-0123"
SECRETS = {
    "COM": PHONE,
    "EXIF": b"EXIF-OWNER-KIM",
    "XMP": b"XMP-CREATOR-KIM",
    "IPTC": b"IPTC-BYLINE-KIM",
}
# Markers of the metadata blocks themselves, whatever they hold.
BLOCK_SIGNATURES = (b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/", b"Photoshop 3.0", b"ICC_PROFILE", b"acsp")


def segments(data: bytes) -> list[int]:
    """The JPEG marker bytes of ``data``'s segments up to the image data (APPn, COM, ...)."""
    assert data[:2] == b"\xff\xd8"
    found, position = [], 2
    while position < len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        found.append(marker)
        if marker == 0xDA:  # start of scan: pixels follow
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        position += 2 + length
    return found


def phone_jpeg(size=(600, 800)) -> bytes:
    """A JPEG as a phone makes it: COM, EXIF with GPS, XMP, IPTC (APP13) and an ICC profile."""
    image = Image.new("RGB", size, (180, 140, 120))
    exif = Image.Exif()
    exif[0x010F] = SECRETS["EXIF"].decode()  # Make
    exif.get_ifd(0x8825)[2] = (37.0, 33.0, 59.0)  # GPSLatitude
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>' + SECRETS["XMP"] + b"</dc:creator></x:xmpmeta>"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", comment=SECRETS["COM"], exif=exif.tobytes(), xmp=xmp, icc_profile=profile)
    data = buffer.getvalue()
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + struct.pack(">I", 20) + b"\x1c\x02\x50\x00\x0f" + SECRETS["IPTC"]
    iptc += b"\x00" * (20 - 5 - len(SECRETS["IPTC"]))
    app13 = b"\xff\xed" + struct.pack(">H", len(iptc) + 2) + iptc
    data = data[:2] + app13 + data[2:]
    # The upload really carries every block.
    assert {0xFE, 0xE1, 0xE2, 0xED} <= set(segments(data))
    for secret in SECRETS.values():
        assert secret in data
    return data


def assert_clean(data: bytes, what: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in data, f"{what} still carries the {name} block"
    for signature in BLOCK_SIGNATURES:
        assert signature not in data, f"{what} still carries a {signature!r} block"
    if data[:2] == b"\xff\xd8":
        kept = set(segments(data)) & {0xFE, 0xE1, 0xE2, 0xED, *range(0xE3, 0xF0)}
        assert not kept, f"{what} keeps the segments {sorted(hex(m) for m in kept)}"


def sent_images(fake_gemini) -> list[bytes]:
    """Every inline image the (fake) Gemini server was sent."""
    return [
        base64.urlsafe_b64decode(blob["data"] + "=" * (-len(blob["data"]) % 4))
        for request in fake_gemini.image_requests
        for content in request.body.get("contents") or []
        for part in content.get("parts") or []
        if (blob := part.get("inlineData") or part.get("inline_data"))
    ]


@pytest.fixture
def phone_photo(user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return photo_create(owner=user, upload=SimpleUploadedFile("phone.jpg", phone_jpeg(), "image/jpeg"))


def read(file) -> bytes:
    with file.open("rb") as handle:
        return handle.read()


def test_the_stored_photo_and_its_thumbnail_carry_no_metadata(client, user, phone_photo):
    assert_clean(read(phone_photo.image), "the stored photo")
    client.force_login(user)
    response = client.get(thumbnail_url(phone_photo.image))
    assert response.status_code == 200
    assert_clean(b"".join(response), "the thumbnail")


def test_result_images_carry_no_metadata(user, phone_photo, catalogue):
    job = run_now(start_job(user, phone_photo, catalogue["top"]))
    assert job.status == "completed"
    for row in job.images.all():
        assert_clean(read(row.image), f"the {row.step} result")


def test_the_engine_is_sent_no_metadata(fake_gemini, user, phone_photo):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from fitting.models import Item
    from fitting.services.items import item_save

    garment = item_save(
        item=Item(name="tagged tee", category="top"), image=SimpleUploadedFile("tee.jpg", phone_jpeg((300, 300)))
    )
    job = run_now(start_job(user, phone_photo, garment, make_item("bottom")))
    assert job.status == "completed"
    sent = sent_images(fake_gemini)
    assert len(sent) >= 4  # the photo (or the last step) and a garment, per step
    for number, data in enumerate(sent):
        assert_clean(data, f"inline image {number} sent to the engine")


def test_a_photo_stored_with_metadata_is_not_sent_on_as_stored(fake_gemini, user, catalogue):
    """A photo stored before uploads were stripped of every block (here: a comment, EXIF and XMP,
    none of which changes the decoded pixels) is re-encoded before it goes to the engine."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    photo = photo_create(owner=user, upload=SimpleUploadedFile("plain.jpg", phone_jpeg(), "image/jpeg"))
    exif = Image.Exif()
    exif[0x010F] = SECRETS["EXIF"].decode()  # Make
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:creator>' + SECRETS["XMP"] + b"</dc:creator></x:xmpmeta>"
    buffer = io.BytesIO()
    Image.new("RGB", (photo.width, photo.height), (180, 140, 120)).save(
        buffer, "JPEG", comment=SECRETS["COM"], exif=exif.tobytes(), xmp=xmp
    )
    with photo.image.open("wb") as handle:  # as an older version stored it
        handle.write(buffer.getvalue())
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "completed"
    sent = sent_images(fake_gemini)
    assert sent
    for number, data in enumerate(sent):
        assert_clean(data, f"inline image {number} sent to the engine")


@pytest.mark.django_db
def test_a_catalogue_image_is_stored_without_metadata():
    from django.core.files.uploadedfile import SimpleUploadedFile

    from core.images import sha256_hex
    from fitting.models import Item
    from fitting.services.items import item_save

    garment = item_save(
        item=Item(name="tagged tee", category="top"), image=SimpleUploadedFile("tee.jpg", phone_jpeg((300, 300)))
    )
    stored = read(garment.image)
    assert_clean(stored, "the stored catalogue image")
    assert garment.content_hash == sha256_hex(stored)  # the hash follows the stored bytes
