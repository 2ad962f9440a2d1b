"""Deleting media files that no row names any more: the one rule every deletion path uses.

Rows of several jobs share one file (a cached result, a job's final image on its last
step's file), so a file is deleted only once no row of any model that names media files
still names it. Deleting waits for the transaction to commit: a rolled-back deletion
keeps its files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.core.files.storage import Storage, default_storage
from django.db import models, transaction

from fitting.models import FittingResultImage, Item
from users.models import UserImage

logger = logging.getLogger(__name__)

# Every (model, field) whose rows name files in the media storage, and the directories the
# files live in. All of them use the default storage.
REFERENCES: tuple[tuple[type[models.Model], str], ...] = (
    (UserImage, "image"),
    (FittingResultImage, "image"),
    (Item, "image"),
)
MEDIA_DIRECTORIES = ("photos", "results", "items")
_BATCH = 500  # names per IN (...) query: well under SQLite's variable limit


def media_storage() -> Storage:
    return default_storage


def referenced_names(names: Iterable[str]) -> set[str]:
    """Those of ``names`` that some row still names."""
    names = list(dict.fromkeys(n for n in names if n))
    used: set[str] = set()
    for start in range(0, len(names), _BATCH):
        batch = names[start : start + _BATCH]
        for model, field in REFERENCES:
            used.update(model.objects.filter(**{f"{field}__in": batch}).values_list(field, flat=True))
    return used


def files_delete_unreferenced(names: Iterable[str]) -> None:
    """Once the current transaction commits, delete those of ``names`` that no row names.

    Whether a row names a file is decided after the commit, so rows the transaction deleted
    no longer count and rows another transaction committed meanwhile do. Outside a
    transaction it runs at once. A file that cannot be deleted is logged and left for the
    retention's orphan sweep.
    """
    names = {name for name in names if name}
    if names:
        transaction.on_commit(lambda: _delete_now(names))


def _delete_now(names: set[str]) -> int:
    storage = media_storage()
    deleted = 0
    for name in sorted(names - referenced_names(names)):
        try:
            storage.delete(name)
        except Exception:
            logger.warning("could not delete media file %s; the orphan sweep will retry", name, exc_info=True)
        else:
            deleted += 1
    return deleted


def files_delete_orphans(*, older_than: datetime, dry_run: bool = False) -> int:
    """Delete files under the media directories that no row names, last modified before ``older_than``.

    The age guards a file being written right now, whose row is not committed yet. Uses
    only ``listdir`` and ``get_modified_time``, so it works on any storage that has them
    (the file system, S3). Returns how many files were (or, with ``dry_run``, would be) deleted.
    """
    storage = media_storage()
    candidates = [name for name in _walk(storage) if _modified_before(storage, name, older_than)]
    orphans = set(candidates) - referenced_names(candidates)
    if dry_run:
        return len(orphans)
    return _delete_now(orphans)


def _walk(storage: Storage, directories: Iterable[str] = MEDIA_DIRECTORIES) -> Iterator[str]:
    for directory in directories:
        try:
            subdirectories, files = storage.listdir(directory)
        except FileNotFoundError:
            continue
        yield from (f"{directory}/{name}" for name in files)
        yield from _walk(storage, (f"{directory}/{sub}" for sub in subdirectories))


def _modified_before(storage: Storage, name: str, moment: datetime) -> bool:
    try:
        return storage.get_modified_time(name) < moment
    except (FileNotFoundError, NotImplementedError):
        return False
