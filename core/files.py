"""Media files: writing new ones safely, and deleting those no row names any more.

Writing: Django's FileSystemStorage keeps the part already written when a write fails (a
full disk mid-file), under a name the caller never learns. Here the name is chosen first, so
a failed write can be removed, and the row that names the file is saved only after the file
exists: callers delete the file again if that row cannot be saved (``file_delete_quietly``).

Deleting: rows of several jobs share one file (a cached result, a job's final image on its
last step's file), so a file is deleted only once no row of any model that names media files
still names it. Deleting waits for the transaction to commit: a rolled-back deletion keeps
its files. This is the one rule every deletion path uses. An image's stored thumbnail
(``core.media.thumbnail_name``) goes with it; the orphan sweep also removes thumbnails whose
image no row names.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage
from django.db import transaction
from django.db.models.fields.files import FieldFile

from core.errors import StorageFullError
from core.media import media_kinds, thumbnail_name, thumbnail_source

logger = logging.getLogger(__name__)

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_BATCH = 500  # names per IN (...) query: well under SQLite's variable limit


def media_storage() -> Storage:
    return default_storage


def referenced_names(names: Iterable[str]) -> set[str]:
    """Those of ``names`` that some row still names."""
    names = list(dict.fromkeys(n for n in names if n))
    used: set[str] = set()
    for start in range(0, len(names), _BATCH):
        batch = names[start : start + _BATCH]
        for kind in media_kinds():  # every (model, field) whose rows name files, as the apps registered them
            used.update(kind.model.objects.filter(**{f"{kind.field}__in": batch}).values_list(kind.field, flat=True))
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
            if thumbnail_source(name) is None:
                storage.delete(thumbnail_name(name))  # deleting a name that does not exist is no error
        except Exception:
            logger.warning("could not delete media file %s; the orphan sweep will retry", name, exc_info=True)
        else:
            deleted += 1
    return deleted


def files_delete_orphans(*, older_than: datetime, dry_run: bool = False) -> int:
    """Delete files under the media directories (and their thumbnails under THUMBNAIL_DIRECTORY)
    that no row names, last modified before ``older_than``.

    The age guards a file being written right now, whose row is not committed yet. Uses
    only ``listdir`` and ``get_modified_time``, so it works on any storage that has them
    (the file system, S3). Returns how many files were (or, with ``dry_run``, would be) deleted.
    """
    storage = media_storage()
    directories = [kind.directory for kind in media_kinds()]
    directories += [thumbnail_name(directory) for directory in directories]
    candidates = [name for name in _walk(storage, directories) if _modified_before(storage, name, older_than)]
    # A thumbnail counts as named while its image is.
    sources = {name: thumbnail_source(name) or name for name in candidates}
    used = referenced_names(sources.values())
    orphans = {name for name, source in sources.items() if source not in used}
    if dry_run:
        return len(orphans)
    return _delete_now(orphans)


def _walk(storage: Storage, directories: Iterable[str]) -> Iterator[str]:
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


def file_store_new(file: FieldFile, filename: str, data: bytes) -> None:
    """Write ``data`` under a new name from the field's ``upload_to``; the row is not saved.

    Raises StorageFullError when the storage has no room (ENOSPC, EDQUOT); any failed write
    removes what it had written.
    """
    storage = file.storage
    name = storage.get_available_name(
        file.field.generate_filename(file.instance, filename), max_length=file.field.max_length
    )
    try:
        saved = storage.save(name, ContentFile(data), max_length=file.field.max_length)
    except BaseException as exc:
        file_delete_quietly(storage, name)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise StorageFullError() from exc
        raise
    setattr(file.instance, file.field.attname, saved)


def file_delete_quietly(storage, name: str) -> None:
    """Remove a file while another error is on its way out: a failure here is only logged."""
    try:
        storage.delete(name)
    except Exception:
        logger.exception("could not remove %s after a failed save", name)
