"""The catalogue feed: read a JSON or CSV product feed and create or update items from it.

``feed_load`` reads the feed (a local file, or an http(s) URL fetched through
``core.outbound``) into rows; ``item_import`` brings the catalogue in line with them, one row
at a time, by external id. Every garment image is downloaded through ``core.outbound`` (the
address checks, timeouts and size limit of every outbound call) and checked as the admin
checks an upload (``item_image_check``); items are written through ``item_save``.

Feed shape: a JSON list of objects (or ``{"items": [...]}``), or CSV with a header row.
Fields, with the names also accepted: ``external_id`` (``externalId``, ``id``), ``name``,
``category`` (``top``, ``bottom``, ``outer``, ``dress``, ``shoes``; also ``one-piece``,
``one-pieces`` and ``dresses`` for a dress, ``footwear`` for shoes), ``image_url`` (``imageUrl``, ``image``).

Each row ends as one of:
- ``created``: a new item;
- ``updated``: the item of that external id changed (name, category, image or active flag);
- ``unchanged``: the item already is what the row says (same name, category, image
  content and active): nothing is written, no file is made;
- ``skipped``: with the reason; the rest of the feed goes on.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image

from core.errors import ServiceError
from core.files import files_delete_unreferenced
from core.outbound import OutboundAddressError, OutboundError, OutboundTooLargeError, outbound_get
from fitting.models import Category, Item
from fitting.services.items import item_image_check, item_save

logger = logging.getLogger(__name__)

# (connect, total) seconds for one download.
IMAGE_TIMEOUT = (3.0, 10.0)
FEED_TIMEOUT = (3.0, 60.0)
NAME_MAX = Item._meta.get_field("name").max_length
EXTERNAL_ID_MAX = Item._meta.get_field("external_id").max_length

# Accepted names of each field, the canonical one first.
FIELDS = {
    "external_id": ("external_id", "externalId", "id"),
    "name": ("name",),
    "category": ("category",),
    "image_url": ("image_url", "imageUrl", "image"),
}

# Other feeds' names of a category (FASHN's "one-pieces", …): stored as ours.
CATEGORY_ALIASES = {"one-piece": "dress", "one-pieces": "dress", "dresses": "dress", "footwear": "shoes"}

CREATED, UPDATED, UNCHANGED, SKIPPED = "created", "updated", "unchanged", "skipped"


class FeedError(Exception):
    """The feed itself cannot be read (missing, unreachable, too large, not JSON or CSV)."""


@dataclass(frozen=True)
class FeedRow:
    number: int  # 1-based position in the feed (CSV: the data row, not counting the header)
    fields: dict[str, str]  # canonical field name -> value ("" when absent)

    @property
    def external_id(self) -> str:
        return self.fields["external_id"]

    @property
    def label(self) -> str:
        return self.external_id or f"row {self.number}"


@dataclass(frozen=True)
class RowOutcome:
    row: FeedRow
    result: str  # CREATED, UPDATED, UNCHANGED or SKIPPED
    reason: str = ""  # why it was skipped
    item_id: int | None = None


@dataclass
class ImportReport:
    outcomes: list[RowOutcome] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)  # external ids
    dry_run: bool = False

    def count(self, result: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.result == result)

    @property
    def skipped(self) -> list[RowOutcome]:
        return [outcome for outcome in self.outcomes if outcome.result == SKIPPED]


class _Skip(Exception):
    """A row that cannot be imported; its message is the reason."""


# --- reading the feed -----------------------------------------------------------------------
def feed_load(source: str, *, fmt: str | None = None) -> list[FeedRow]:
    """The rows of the feed at ``source`` (a file path, or an http(s) URL).

    ``fmt`` ("json" or "csv") overrides the guess, which goes by the file name's extension,
    then by the content (a feed starting with ``[`` or ``{`` is JSON). Raises FeedError.
    """
    data = _feed_bytes(source)
    fmt = fmt or _guess_format(source, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedError(f"the feed is not UTF-8 text: {exc}") from exc
    records = _json_records(text) if fmt == "json" else _csv_records(text)
    return [FeedRow(number=n, fields=_canonical(record)) for n, record in enumerate(records, start=1)]


def _is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def _feed_bytes(source: str) -> bytes:
    limit = settings.FITTING_IMPORT_MAX_FEED_BYTES
    if _is_url(source):
        try:
            response = outbound_get(
                source,
                allow_private=settings.FITTING_IMPORT_ALLOW_PRIVATE,
                timeout=FEED_TIMEOUT,
                max_bytes=limit,
            )
        except OutboundTooLargeError as exc:
            raise FeedError(f"the feed is larger than {limit} bytes") from exc
        except OutboundAddressError as exc:
            raise FeedError(f"the feed URL is refused: {exc}") from exc
        except OutboundError as exc:
            raise FeedError(f"the feed cannot be downloaded: {exc}") from exc
        if response.status != 200:
            raise FeedError(f"the feed cannot be downloaded: HTTP {response.status}")
        return response.body
    path = Path(source)
    try:
        if path.stat().st_size > limit:
            raise FeedError(f"the feed is larger than {limit} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise FeedError(f"the feed cannot be read: {exc}") from exc


def _guess_format(source: str, data: bytes) -> str:
    suffix = Path(source.split("?", 1)[0]).suffix.lower()
    if suffix in (".json", ".csv"):
        return suffix[1:]
    return "json" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{") else "csv"


def _json_records(text: str) -> list:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeedError(f"the feed is not valid JSON: {exc}") from exc
    if isinstance(parsed, dict):
        parsed = parsed.get("items")
    if not isinstance(parsed, list):
        raise FeedError('a JSON feed is a list of objects, or {"items": [...]}')
    return parsed


def _csv_records(text: str) -> list:
    reader = csv.DictReader(io.StringIO(text))
    try:
        records = list(reader)
    except csv.Error as exc:
        raise FeedError(f"the feed is not valid CSV: {exc}") from exc
    if reader.fieldnames is None:
        return []
    known = {name for names in FIELDS.values() for name in names}
    if not known.intersection(name.strip() for name in reader.fieldnames):
        raise FeedError(f"the CSV header names none of the fields ({', '.join(FIELDS)})")
    return records


def _canonical(record) -> dict[str, str]:
    """The row's fields under their canonical names; "" for a missing field. A non-object
    JSON entry becomes a row with every field missing (skipped with that reason)."""
    if not isinstance(record, dict):
        return dict.fromkeys(FIELDS, "")
    record = {str(key).strip(): value for key, value in record.items() if key is not None}
    fields = {}
    for name, aliases in FIELDS.items():
        value = next((record[alias] for alias in aliases if record.get(alias) not in (None, "")), "")
        fields[name] = value.strip() if isinstance(value, str) else str(value)
    return fields


# --- importing --------------------------------------------------------------------------------
def item_import(
    *,
    rows: list[FeedRow],
    deactivate_missing: bool = False,
    dry_run: bool = False,
    on_row: Callable[[RowOutcome], None] | None = None,
) -> ImportReport:
    """Create or update an item for each row, by external id; see the module docstring.

    With ``deactivate_missing``, the active items that have an external id the feed does not
    name (not even in a skipped row) are deactivated; items without an external id are never
    touched, and an empty feed deactivates nothing (FeedError: it is more likely broken than
    meant). With ``dry_run`` everything is downloaded and checked but nothing is written.
    ``on_row`` hears of each row's outcome as it is decided (a progress bar).
    """
    if deactivate_missing and not rows:
        raise FeedError("the feed has no rows: refusing to deactivate every imported item")
    report = ImportReport(dry_run=dry_run)
    seen: set[str] = set()
    for row in rows:
        outcome = _import_row(row, seen=seen, dry_run=dry_run)
        if row.external_id:
            seen.add(row.external_id)
        report.outcomes.append(outcome)
        if on_row is not None:
            on_row(outcome)
    if deactivate_missing:
        report.deactivated = _deactivate_missing(seen, dry_run=dry_run)
    return report


def _import_row(row: FeedRow, *, seen: set[str], dry_run: bool) -> RowOutcome:
    try:
        external_id, name, category, url = _validated(row, seen)
        data = _download_image(url)
        try:
            content_hash = item_image_check(data)
        except ServiceError as exc:
            raise _Skip(f"not an acceptable image ({exc.code})") from exc
        return _write(row, external_id, name, category, data, content_hash, dry_run=dry_run)
    except _Skip as skip:
        return RowOutcome(row=row, result=SKIPPED, reason=str(skip))


def _validated(row: FeedRow, seen: set[str]) -> tuple[str, str, str, str]:
    fields = row.fields
    missing = [name for name in FIELDS if not fields[name]]
    if missing:
        raise _Skip(f"missing {', '.join(missing)}")
    external_id, name, category, url = (fields[n] for n in ("external_id", "name", "category", "image_url"))
    if len(external_id) > EXTERNAL_ID_MAX:
        raise _Skip(f"external_id longer than {EXTERNAL_ID_MAX} characters")
    if external_id in seen:
        raise _Skip("external_id repeated in the feed (the first row counts)")
    if len(name) > NAME_MAX:
        raise _Skip(f"name longer than {NAME_MAX} characters")
    category = CATEGORY_ALIASES.get(category, category)
    if category not in Category.values:
        raise _Skip(f"invalid category {category!r} ({', '.join(Category.values)})")
    return external_id, name, category, url


def _download_image(url: str) -> bytes:
    limit = settings.FITTING_IMPORT_MAX_IMAGE_BYTES
    try:
        response = outbound_get(
            url, allow_private=settings.FITTING_IMPORT_ALLOW_PRIVATE, timeout=IMAGE_TIMEOUT, max_bytes=limit
        )
    except OutboundAddressError as exc:
        raise _Skip(f"image URL refused: {exc}") from exc
    except OutboundTooLargeError as exc:
        raise _Skip(f"image larger than {limit} bytes") from exc
    except OutboundError as exc:
        raise _Skip(f"image download failed: {exc}") from exc
    if response.status != 200:
        raise _Skip(f"image download failed: HTTP {response.status}")
    return response.body


def _write(
    row: FeedRow, external_id: str, name: str, category: str, data: bytes, content_hash: str, *, dry_run: bool
) -> RowOutcome:
    item = Item.objects.filter(external_id=external_id).first()
    if item is None:
        if not dry_run:
            item = Item(external_id=external_id, name=name, category=category, is_active=True)
            try:
                with transaction.atomic():
                    item_save(item=item, image=_image_file(data))
            except IntegrityError as exc:  # another import created it meanwhile
                raise _Skip(f"external_id taken meanwhile ({exc})") from exc
        return RowOutcome(row=row, result=CREATED, item_id=item.id if item else None)
    new_image = item.content_hash != content_hash
    if not new_image and (item.name, item.category, item.is_active) == (name, category, True):
        return RowOutcome(row=row, result=UNCHANGED, item_id=item.id)
    if not dry_run:
        old_file = item.image.name
        item.name, item.category, item.is_active = name, category, True
        with transaction.atomic():
            item_save(item=item, image=_image_file(data) if new_image else None)
            if new_image:
                # Jobs keep their own result images; no row names the old garment file now.
                files_delete_unreferenced([old_file])
    return RowOutcome(row=row, result=UPDATED, item_id=item.id)


def _image_file(data: bytes) -> ContentFile:
    extension = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic"}.get(
        Image.open(io.BytesIO(data)).format or "", "img"
    )
    return ContentFile(data, name=f"feed.{extension}")


def _deactivate_missing(seen: set[str], *, dry_run: bool) -> list[str]:
    active = dict(Item.objects.filter(is_active=True).exclude(external_id="").values_list("external_id", "id"))
    external_ids = sorted(set(active) - seen)
    if not dry_run:
        ids = [active[external_id] for external_id in external_ids]
        for start in range(0, len(ids), 500):  # well under SQLite's variable limit
            Item.objects.filter(id__in=ids[start : start + 500]).update(is_active=False)
    return external_ids
