"""``import_items``: a catalogue feed served from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from fitting.models import Item
from fitting.services.items import item_image_clean
from tests.factories import image_bytes, make_item

DATA = Path(__file__).resolve().parent.parent / "data"


class FeedHost:
    """A directory served over HTTP on 127.0.0.1: the feed and its images."""

    def __init__(self, root: Path, base: str):
        self.root = root
        self.base = base

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return f"{self.base}/{name}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def put_json(self, name: str, payload) -> str:
        return self.put(name, json.dumps(payload).encode())


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "feed-host"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield FeedHost(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_items", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args) -> str:
    with pytest.raises(CommandError) as error:
        run(*args)
    return str(error.value)


def summary(output: str) -> str:
    return output.strip().splitlines()[-1]


def item_files(media_root: Path) -> list[str]:
    directory = media_root / "items"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def noise_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def images(host):
    return {
        "top": host.put("tee.png", image_bytes((48, 48), (20, 30, 90))),
        "bottom": host.put("chinos.jpg", image_bytes((48, 64), (200, 180, 140), fmt="JPEG")),
        "outer": host.put("astronaut.png", (DATA / "photos" / "astronaut.png").read_bytes()),
        "big": host.put("big.png", noise_png(640)),  # ~1.2 MB, over the limit set below
        "text": host.put("notes.png", b"this is not an image at all"),
        "gone": host.url("missing.png"),  # 404
    }


@pytest.fixture(autouse=True)
def limits(settings):
    settings.FITTING_IMPORT_MAX_IMAGE_BYTES = 1_000_000  # astronaut.png is 792 kB
    settings.FITTING_IMPORT_ALLOW_PRIVATE = True  # the feed host is 127.0.0.1


def good_rows(images) -> list[dict]:
    return [
        {"external_id": "sku-1", "name": "Navy tee", "category": "top", "image_url": images["top"]},
        {"externalId": "sku-2", "name": "Beige chinos", "category": "bottom", "imageUrl": images["bottom"]},
        {"id": 3, "name": "Space coat", "category": "outer", "image": images["outer"]},
    ]


def bad_rows(images) -> list[dict]:
    return [
        {"external_id": "bad-cat", "name": "Hat", "category": "hat", "image_url": images["top"]},
        {"external_id": "bad-404", "name": "Gone", "category": "top", "image_url": images["gone"]},
        {"external_id": "bad-big", "name": "Huge", "category": "top", "image_url": images["big"]},
        {"external_id": "bad-text", "name": "Text", "category": "top", "image_url": images["text"]},
        {
            "external_id": "bad-meta",
            "name": "Metadata",
            "category": "top",
            "image_url": "http://169.254.169.254/latest/meta-data/",
        },
        {"external_id": "bad-none", "category": "top", "image_url": images["top"]},
        {"external_id": "sku-1", "name": "Again", "category": "top", "image_url": images["top"]},
    ]


@pytest.mark.django_db
def test_a_json_feed_creates_items_skips_bad_rows_and_a_second_run_changes_nothing(host, images, media_root):
    url = host.put_json("feed.json", good_rows(images) + bad_rows(images))
    out, err = run(url)
    assert summary(out) == "created 3, updated 0, unchanged 0, skipped 7, deactivated 0"
    skipped = dict(line.split(": ", 1) for line in out.strip().splitlines()[:-1])
    assert skipped["skipped bad-cat"] == "invalid category 'hat' (top, bottom, outer, dress, shoes)"
    assert skipped["skipped bad-404"] == "image download failed: HTTP 404"
    assert skipped["skipped bad-big"] == "image larger than 1000000 bytes"
    assert skipped["skipped bad-text"] == "not an acceptable image (IMAGE_INVALID)"
    assert skipped["skipped bad-meta"].startswith("image URL refused: 169.254.169.254 resolves to 169.254.169.254")
    assert skipped["skipped bad-none"] == "missing name"
    assert skipped["skipped sku-1"] == "external_id repeated in the feed (the first row counts)"
    assert "10/10" in err  # the progress bar, on stderr

    items = {item.external_id: item for item in Item.objects.all()}
    assert set(items) == {"sku-1", "sku-2", "3"}
    assert (items["sku-1"].name, items["sku-1"].category, items["sku-1"].is_active) == ("Navy tee", "top", True)
    served = (host.root / "astronaut.png").read_bytes()
    stored = items["3"].image.read()
    assert stored == item_image_clean(served)[0]  # stored as checked: no metadata block
    assert items["3"].content_hash == hashlib.sha256(stored).hexdigest()
    assert items["sku-2"].image.name.endswith(".jpg")
    files = item_files(media_root)
    assert len(files) == 3

    out, _ = run(url)
    assert summary(out) == "created 0, updated 0, unchanged 3, skipped 7, deactivated 0"
    assert Item.objects.count() == 3
    assert item_files(media_root) == files  # no file written or removed


@pytest.mark.django_db(transaction=True)  # the old file goes once the update commits
def test_a_changed_row_updates_its_item_and_replaces_its_image(host, images, media_root):
    rows = good_rows(images)
    url = host.put_json("feed.json", {"items": rows})
    run(url)
    before = {item.external_id: item for item in Item.objects.all()}
    old_top_file = before["sku-1"].image.name

    host.put("tee.png", image_bytes((48, 48), (200, 30, 30)))  # a new picture at the same URL
    rows[1]["name"] = "Stone chinos"
    host.put_json("feed.json", {"items": rows})
    out, _ = run(url)
    assert summary(out) == "created 0, updated 2, unchanged 1, skipped 0, deactivated 0"
    after = {item.external_id: item for item in Item.objects.all()}
    assert {k: v.id for k, v in after.items()} == {k: v.id for k, v in before.items()}  # same rows
    assert after["sku-2"].name == "Stone chinos"
    assert (
        after["sku-1"].content_hash
        == hashlib.sha256(item_image_clean((host.root / "tee.png").read_bytes())[0]).hexdigest()
    )
    assert after["sku-1"].image.name != old_top_file
    assert old_top_file.rsplit("/", 1)[-1] not in item_files(media_root)  # the old file is gone
    assert len(item_files(media_root)) == 3


@pytest.mark.django_db
def test_a_csv_file_with_other_field_names(tmp_path, images):
    feed = tmp_path / "feed.csv"
    with feed.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "category", "imageUrl"])
        writer.writerow(["c-1", "린넨 셔츠", "top", images["top"]])
        writer.writerow(["c-2", "Wide pants", "bottom", images["bottom"]])
        writer.writerow(["c-3", "Bad", "hat", images["top"]])
    out, _ = run(str(feed))
    assert summary(out) == "created 2, updated 0, unchanged 0, skipped 1, deactivated 0"
    assert out.startswith("skipped c-3: invalid category 'hat'")
    assert dict(Item.objects.values_list("external_id", "name")) == {"c-1": "린넨 셔츠", "c-2": "Wide pants"}


@pytest.mark.django_db
def test_dresses_and_shoes_are_imported_under_their_own_and_other_feeds_names(host, images):
    rows = [
        {"external_id": "d-1", "name": "Linen dress", "category": "dress", "image_url": images["top"]},
        {"external_id": "d-2", "name": "Slip dress", "category": "one-pieces", "image_url": images["bottom"]},
        {"external_id": "s-1", "name": "Sneakers", "category": "shoes", "image_url": images["outer"]},
        {"external_id": "s-2", "name": "Loafers", "category": "footwear", "image_url": images["top"]},
    ]
    out, _ = run(host.put_json("feed.json", rows))
    assert summary(out) == "created 4, updated 0, unchanged 0, skipped 0, deactivated 0"
    assert dict(Item.objects.values_list("external_id", "category")) == {
        "d-1": "dress",
        "d-2": "dress",
        "s-1": "shoes",
        "s-2": "shoes",
    }


@pytest.mark.django_db
def test_deactivate_missing_only_touches_imported_items_the_feed_does_not_name(host, images):
    handmade = make_item("top", "Staff's own tee")
    rows = good_rows(images)
    url = host.put_json("feed.json", rows)
    run(url)

    # sku-2 leaves the feed; 3 stays but its image is unreachable this time (still named).
    rows = [rows[0], {**rows[2], "image": images["gone"]}]
    url = host.put_json("feed.json", rows)
    out, _ = run(url)
    assert summary(out) == "created 0, updated 0, unchanged 1, skipped 1, deactivated 0"
    assert Item.objects.filter(is_active=False).count() == 0  # nothing without the flag

    out, _ = run(url, "--deactivate-missing")
    assert "deactivated sku-2" in out.splitlines()
    assert summary(out) == "created 0, updated 0, unchanged 1, skipped 1, deactivated 1"
    active = dict(Item.objects.values_list("external_id", "is_active"))
    assert active == {"": True, "sku-1": True, "sku-2": False, "3": True}
    handmade.refresh_from_db()
    assert handmade.is_active

    # Back in the feed: active again.
    url = host.put_json("feed.json", good_rows(images))
    out, _ = run(url)
    assert summary(out) == "created 0, updated 1, unchanged 2, skipped 0, deactivated 0"
    assert Item.objects.get(external_id="sku-2").is_active


@pytest.mark.django_db
def test_an_empty_feed_never_deactivates_everything(host, images):
    run(host.put_json("feed.json", good_rows(images)))
    message = run_failing(host.put_json("empty.json", []), "--deactivate-missing")
    assert "refusing to deactivate" in message
    assert Item.objects.filter(is_active=True).count() == 3


@pytest.mark.django_db
def test_dry_run_downloads_and_checks_but_writes_nothing(host, images, media_root):
    url = host.put_json("feed.json", good_rows(images) + bad_rows(images)[:1])
    out, _ = run(url, "--dry-run")
    assert summary(out) == "created 3, updated 0, unchanged 0, skipped 1, deactivated 0; dry run, nothing written"
    assert Item.objects.count() == 0
    assert item_files(media_root) == []


@pytest.mark.django_db
def test_private_addresses_are_refused_unless_allowed(host, images, tmp_path, settings):
    settings.FITTING_IMPORT_ALLOW_PRIVATE = False
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps(good_rows(images)[:1]))
    out, _ = run(str(feed))
    assert out.startswith("skipped sku-1: image URL refused: 127.0.0.1 resolves to 127.0.0.1")
    assert Item.objects.count() == 0
    assert "the feed URL is refused" in run_failing(host.put_json("feed.json", good_rows(images)))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make_source", "expected"),
    [
        (lambda host, tmp: str(tmp / "nowhere.json"), "the feed cannot be read"),
        (lambda host, tmp: host.url("missing.json"), "the feed cannot be downloaded: HTTP 404"),
        (lambda host, tmp: host.put("broken.json", b"[{"), "the feed is not valid JSON"),
        (lambda host, tmp: host.put_json("object.json", {"products": []}), "a JSON feed is a list of objects"),
        (lambda host, tmp: host.put("other.csv", b"sku,title\n1,x\n"), "the CSV header names none of the fields"),
        (lambda host, tmp: "ftp://127.0.0.1/feed.json", "the feed cannot be read"),
    ],
)
def test_a_feed_that_cannot_be_read_fails_the_command(host, tmp_path, make_source, expected):
    assert expected in run_failing(make_source(host, tmp_path))
    assert Item.objects.count() == 0


@pytest.mark.django_db
def test_a_feed_larger_than_its_limit_is_refused(host, images, settings):
    settings.FITTING_IMPORT_MAX_FEED_BYTES = 100
    assert "the feed is larger than 100 bytes" in run_failing(host.put_json("feed.json", good_rows(images)))
