"""Writing new image files: a failed write leaves nothing behind, a full disk is a coded error.

Django's FileSystemStorage keeps the part already written when a write fails (a full disk
mid-file), under a name the caller never learns. Here the name is chosen first, so a failed
write can be removed, and the row that names the file is saved only after the file exists:
callers delete the file again if that row cannot be saved (``delete_quietly``).
"""

from __future__ import annotations

import errno
import logging

from django.core.files.base import ContentFile
from django.db.models.fields.files import FieldFile

from fitting.errors import StorageFullError

logger = logging.getLogger(__name__)

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def store_new_file(file: FieldFile, filename: str, data: bytes) -> None:
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
        delete_quietly(storage, name)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise StorageFullError() from exc
        raise
    setattr(file.instance, file.field.attname, saved)


def delete_quietly(storage, name: str) -> None:
    """Remove a file while another error is on its way out: a failure here is only logged."""
    try:
        storage.delete(name)
    except Exception:
        logger.exception("could not remove %s after a failed save", name)
