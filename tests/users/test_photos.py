import io
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from tests.factories import image_bytes, make_token
from users.models import UserImage

URL = "/api/users/me/photos"


def upload(api, data: bytes, name="photo.jpg", content_type="image/jpeg"):
    return api.post(URL, {"image": SimpleUploadedFile(name, data, content_type=content_type)}, format="multipart")


def stored_image(photo_id: int) -> Image.Image:
    photo = UserImage.objects.get(id=photo_id)
    with photo.image.open("rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
        image.load()
    return image


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "a.jpg"), ("PNG", "a.png"), ("WEBP", "a.webp"), ("HEIF", "a.heic")])
def test_upload_formats(api, fmt, name):
    response = upload(api, image_bytes((40, 60), fmt=fmt), name=name)
    assert response.status_code == 201, response.content
    data = response.json()
    assert set(data) == {"id", "url", "width", "height", "createdAt"}
    assert (data["width"], data["height"]) == (40, 60)
    assert data["url"].startswith("http://testserver/media/photos/")
    assert stored_image(data["id"]).size == (40, 60)


def test_exif_orientation_is_applied(api):
    # A 60x40 landscape image whose EXIF says "rotate 90°": it is really a 40x60 portrait.
    image = Image.new("RGB", (60, 40), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 40))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    response = upload(api, buffer.getvalue())
    assert response.status_code == 201
    assert (response.json()["width"], response.json()["height"]) == (40, 60)
    stored = stored_image(response.json()["id"])
    assert stored.size == (40, 60)
    assert stored.getexif().get(0x0112) in (None, 1)  # no orientation left to apply
    red, _green, blue = stored.convert("RGB").getpixel((20, 3))  # orientation 6 puts the left strip on top
    assert red > 200 and blue < 60


def test_stored_names_are_random_and_the_hash_is_kept(api):
    data = image_bytes(fmt="PNG")
    first, second = upload(api, data, name="me.png").json(), upload(api, data, name="me.png").json()
    assert first["url"] != second["url"]
    assert "me" not in first["url"].rsplit("/", 1)[-1]
    photos = UserImage.objects.order_by("id")
    assert len(photos[0].content_hash) == 64
    assert photos[0].content_hash == photos[1].content_hash


def test_byte_limit(api, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    response = upload(api, image_bytes((300, 300), fmt="PNG") + b"\0" * 2000, name="a.png")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "IMAGE_TOO_LARGE"
    assert response.json()["error"]["field"] == "image"
    assert UserImage.objects.count() == 0


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims an enormous size: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_pixel_limit_stops_a_decompression_bomb(api):
    response = upload(api, _png_header_only(60000, 60000), name="bomb.png")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "IMAGE_TOO_MANY_PIXELS"
    assert UserImage.objects.count() == 0


def test_pixel_limit_is_configurable(api, settings):
    settings.UPLOAD_MAX_PIXELS = 100
    response = upload(api, image_bytes((20, 20), fmt="PNG"), name="a.png")
    assert response.json()["error"]["code"] == "IMAGE_TOO_MANY_PIXELS"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, not an image",
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        b"<html><script>alert(1)</script></html>",
        image_bytes(fmt="PNG")[:60],  # truncated
        image_bytes(fmt="GIF"),  # a real image in a format we do not take
        image_bytes(fmt="BMP"),
    ],
    ids=["empty", "text", "svg", "html", "truncated", "gif", "bmp"],
)
def test_not_an_accepted_image(api, data, media_root):
    response = upload(api, data, name="x.png", content_type="image/png")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "IMAGE_INVALID"
    assert UserImage.objects.count() == 0
    assert not list(media_root.glob("photos/*"))  # no file left behind
    assert api.get("/healthz").status_code == 200


def test_missing_file_field(api):
    response = api.post(URL, {"other": "x"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": response.json()["error"]["message"],
        "field": "image",
    }


def test_polyglot_is_stored_as_plain_pixels(api):
    """A JPEG with HTML appended keeps its pixels; what is stored is re-encoded without the payload."""
    data = image_bytes(fmt="JPEG") + b"<html><script>alert(1)</script></html>"
    response = upload(api, data)
    assert response.status_code == 201
    with UserImage.objects.get().image.open("rb") as handle:
        assert b"<script>" not in handle.read()


def test_list_is_owner_only_and_newest_first(api, other_user):
    ids = [upload(api, image_bytes(fmt="PNG"), name="a.png").json()["id"] for _ in range(3)]
    assert [p["id"] for p in api.get(URL).json()] == ids[::-1]
    intruder = APIClient()
    intruder.force_authenticate(other_user)
    assert intruder.get(URL).json() == []


def test_uploaded_photo_is_served_to_its_owner_only_as_an_image(api, client, user, other_user):
    url = upload(api, image_bytes(fmt="PNG"), name="a.png").json()["url"].replace("http://testserver", "")
    owner = APIClient()
    owner.force_login(user)
    response = owner.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] in ("image/png", "image/jpeg")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert client.get(url).status_code == 404  # anonymous
    client.force_login(other_user)
    assert client.get(url).status_code == 404  # someone else
    client.force_login(user)
    assert client.get(url).status_code == 200  # the owner's session
    token = make_token(user)
    from django.test import Client

    assert Client().get(url, headers={"Authorization": f"Token {token}"}).status_code == 200
