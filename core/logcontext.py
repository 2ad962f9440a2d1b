"""Log lines that can be followed: the job, attempt, step and user a line was written for.

``log_context(job_id=…, attempt=…, step=…, user_id=…)`` binds fields for the code it wraps (a
context variable: per thread and per asyncio task, undone on exit). ``ContextFilter`` (on the
handler, see LOGGING) puts the bound fields on every record, as attributes and as ``context``
(" job_id=… attempt=…" for the plain format); ``JsonFormatter`` (python-json-logger's, set
up for these keys) writes one JSON object a line (LOG_FORMAT=json) with them as keys.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

FIELDS = ("job_id", "attempt", "step", "user_id")

_context: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Bind ``fields`` (a subset of FIELDS; None unbinds one) to the log lines written inside."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, object]:
    return {name: value for name, value in _context.get().items() if value is not None}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        bound = current()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name))
        record.context = "".join(f" {name}={bound[name]}" for name in FIELDS if name in bound)
        return True


class JsonFormatter(LibraryJsonFormatter):
    """One JSON object per line: time, level, logger, message, the bound fields, and any traceback.

    Only those keys: other attributes a record carries (Django's ``request``, ``status_code``)
    and the plain format's ``context`` are left out, and so are the fields not bound.
    """

    KEYS = frozenset({"time", "level", "logger", "message", "exc_info", "stack_info", *FIELDS})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")  # the record's time, UTC, ISO 8601
        kwargs.setdefault("json_ensure_ascii", False)
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in [key for key, value in log_data.items() if key not in self.KEYS or value is None]:
            del log_data[key]
