"""Request bodies are bounded in front of Django (config/bodylimit.py): REQUEST_MAX_BYTES."""

from __future__ import annotations

import asyncio
import itertools
import operator

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from config.asgi import application
from tests.factories import image_bytes, make_token
from tests.servers import uvicorn_server
from users.models import UserImage

LIMIT = 64 * 1024
CHUNK = 4096


class Exchange:
    """One request to the ASGI app with a body we feed chunk by chunk; counts what was pulled."""

    def __init__(self, chunks, *, path="/api/users/me/photos", headers=()):
        self.chunks = iter(chunks)
        self.pulled = 0
        self.body_done = False
        self.sent: list[dict] = []
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), *headers],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }

    async def receive(self):
        if self.body_done:  # the client stays until the answer
            await asyncio.Event().wait()
        chunk = next(self.chunks, b"")
        self.pulled += 1
        self.body_done = operator.length_hint(self.chunks, 1) == 0  # an endless stream never ends
        return {"type": "http.request", "body": chunk, "more_body": not self.body_done}

    async def send(self, message):
        self.sent.append(message)

    def run(self) -> Exchange:
        # As Django's test client does: the test's transaction must outlive the request.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            async_to_sync(application)(self.scope, self.receive, self.send)
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return self

    @property
    def status(self) -> int:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]  # exactly one
        return start["status"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def assert_refused(exchange: Exchange) -> None:
    import json

    assert exchange.status == 413
    error = json.loads(exchange.body)["error"]
    assert error["code"] == "REQUEST_TOO_LARGE"
    assert error["field"] is None
    assert error["message"]


def test_a_content_length_over_the_limit_is_refused_before_reading_the_body(settings):
    settings.REQUEST_MAX_BYTES = LIMIT
    body = [b"x" * CHUNK] * (LIMIT // CHUNK) + [b"x"]
    exchange = Exchange(body, headers=[(b"content-length", str(LIMIT + 1).encode())]).run()
    assert_refused(exchange)
    assert exchange.pulled == 0


def test_a_chunked_body_is_refused_once_it_passes_the_limit_and_the_rest_is_never_read(settings):
    settings.REQUEST_MAX_BYTES = LIMIT
    exchange = Exchange(itertools.repeat(b"x" * CHUNK, 1000), headers=[(b"transfer-encoding", b"chunked")]).run()
    assert_refused(exchange)
    assert exchange.pulled == LIMIT // CHUNK + 1  # the limit plus the one chunk that passed it


def test_the_refusal_is_translated_from_accept_language(settings):
    settings.REQUEST_MAX_BYTES = LIMIT
    messages = {}
    for language in ("ko", "en"):
        exchange = Exchange(
            [], headers=[(b"content-length", str(LIMIT + 1).encode()), (b"accept-language", language.encode())]
        ).run()
        messages[language] = exchange.body.decode()
    assert "The request body is too large." in messages["en"]
    assert messages["ko"] != messages["en"]


def test_a_body_under_the_limit_reaches_the_app_unchanged(settings, user):
    settings.REQUEST_MAX_BYTES = LIMIT
    token = make_token(user)
    picture = image_bytes((48, 72), fmt="PNG")
    body = encode_multipart(BOUNDARY, {"image": SimpleUploadedFile("me.png", picture, content_type="image/png")})
    assert len(body) < LIMIT
    exchange = Exchange(
        [body[i : i + 100] for i in range(0, len(body), 100)],
        headers=[
            (b"content-type", MULTIPART_CONTENT.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Token {token}".encode()),
        ],
    ).run()
    assert exchange.status == 201, exchange.body
    photo = UserImage.objects.get(owner=user)
    assert (photo.width, photo.height) == (48, 72)


# --- against a real uvicorn -------------------------------------------------------------------
HUGE = 200 * 1024 * 1024


def _huge_body(counter: list[int]):
    chunk = b"x" * 65536
    for _ in range(HUGE // len(chunk)):
        counter[0] += len(chunk)
        yield chunk


@pytest.mark.dbagnostic  # uvicorn on a SQLite file of its own (tests.servers), whatever the stage
def test_uvicorn_refuses_a_huge_chunked_body_without_taking_it(tmp_path):
    consumed = [0]
    with uvicorn_server(tmp_path, REQUEST_MAX_BYTES=str(1024 * 1024)) as base:
        response = httpx.post(f"{base}/api/users/me/photos", content=_huge_body(consumed), timeout=60)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "REQUEST_TOO_LARGE"
    assert consumed[0] < HUGE // 2  # the client was stopped long before the end


@pytest.mark.dbagnostic  # uvicorn on a SQLite file of its own (tests.servers), whatever the stage
def test_uvicorn_refuses_a_huge_content_length_without_taking_it(tmp_path):
    consumed = [0]
    with uvicorn_server(tmp_path, REQUEST_MAX_BYTES=str(1024 * 1024)) as base:
        response = httpx.post(
            f"{base}/api/auth/token",
            content=_huge_body(consumed),
            headers={"content-length": str(1024**3), "content-type": "application/json"},
            timeout=60,
        )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "REQUEST_TOO_LARGE"
    assert consumed[0] < HUGE // 2
