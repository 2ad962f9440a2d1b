"""Log lines that can be followed: the job, attempt, step and user a line was written for.

``log_context(job_id=…, attempt=…, step=…, user_id=…)`` binds fields for the code it wraps (a
context variable: per thread and per asyncio task, undone on exit). ``ContextFilter`` (on the
handler, see LOGGING) puts the bound fields on every record, as attributes and as ``context``
(" job_id=… attempt=…" for the plain format); ``JsonFormatter`` writes one JSON object a line
(LOG_FORMAT=json) with them as keys. A small formatter of our own rather than a dependency:
the fields are few and known.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound fields, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
