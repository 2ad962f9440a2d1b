"""A bound on request bodies, in front of Django (pure ASGI).

Django's ASGIHandler reads the whole body into a temporary file before any middleware or
view runs, so the bound has to sit outside it. A body over ``REQUEST_MAX_BYTES`` answers
413 ``REQUEST_TOO_LARGE`` (the API's error shape) and the connection is closed:

- a ``Content-Length`` over the limit is refused before one byte of the body is read;
- a body without a length (chunked) is counted as it arrives, and refused as soon as the
  running total passes the limit. Django is then handed ``http.disconnect``, so it stops
  reading and never answers itself.

At most the limit plus one chunk is ever read, so memory and temporary disk stay flat.
"""

from __future__ import annotations

import io
import json

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.utils import translation

from core.errors import RequestTooLargeError
from core.exceptions import error_body


class BodyLimitMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = settings.REQUEST_MAX_BYTES
        if _content_length(scope) > limit:
            return await _refuse(scope, send)

        received = 0
        refused = False

        async def limited_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await _refuse(scope, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            # One response per request: once refused, nothing of the app's reaches the client.
            if not refused:
                await send(message)

        return await self.app(scope, limited_receive, guarded_send)


def _content_length(scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:  # the server refuses these; nothing to bound here
                return 0
    return 0


async def _refuse(scope, send) -> None:
    # Outside Django's LocaleMiddleware: pick the language from Accept-Language the same way.
    language = translation.get_language_from_request(ASGIRequest(scope, io.BytesIO()))
    with translation.override(language):
        message = str(RequestTooLargeError().message)
    body = json.dumps(error_body(RequestTooLargeError.code, message), ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": RequestTooLargeError.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is never read: close rather than drain it.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
