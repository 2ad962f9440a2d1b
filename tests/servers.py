"""Light real-server helpers: one uvicorn process of the app, and network peers that misbehave."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.e2e import ROOT, free_port, stop_process


@contextmanager
def uvicorn_server(tmp: Path, **env: str) -> Iterator[str]:
    """``config.asgi:application`` under uvicorn, started by ``config.serve`` as deployments
    start it (local settings, a SQLite file of its own unless ``DATABASE_URL`` is given);
    yields its base URL. No migrations: for tests that need no rows."""
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        "MEDIA_ROOT": str(tmp / "media"),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log_path = tmp / f"uvicorn-{port}.log"
    command = [sys.executable, "-m", "config.serve", "--host", "127.0.0.1"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(base, process, log_path)
        yield base
    finally:
        stop_process(process)


def _wait_for_http(base: str, process: subprocess.Popen, log_path: Path) -> None:
    # Any answer will do (a 404 under /api/ touches neither the database nor the broker).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            httpx.get(f"{base}/api/-ready", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("uvicorn did not start: " + log_path.read_text(errors="replace")[-3000:])


@contextmanager
def tarpit() -> Iterator[int]:
    """A TCP peer that accepts every connection and never says a word (a hung database or
    broker, a black-holed firewall): yields its port on 127.0.0.1."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            held.append(connection)  # kept open, never read from nor written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: threading.Event | None = None  # the reply waits until this is set (a slow peer)


class RecordingServer:
    """What ``recording_server`` yields: its port, the requests it got, the replies to give."""

    def __init__(self, port: int, replies: list[Reply]):
        self.port = port
        self.replies = replies  # given in order; once used up, 200 with an empty body
        self.received: list[Received] = []
        self.base = f"http://127.0.0.1:{port}"


@contextmanager
def recording_server(replies: list[Reply] | None = None, *, ssl_context=None) -> Iterator[RecordingServer]:
    """A real HTTP server on 127.0.0.1 (a webhook receiver, a feed host) that records every
    request and answers with ``replies`` in turn; ``ssl_context`` makes it https."""
    lock = threading.Lock()
    state: RecordingServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                state.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
                reply = state.replies.pop(0) if state.replies else Reply()
            if reply.delay is not None:
                reply.delay.wait(30)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    state = RecordingServer(server.server_address[1], list(replies or []))
    delays = [reply.delay for reply in state.replies if reply.delay is not None]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        for event in delays:
            event.set()
        server.shutdown()
        server.server_close()
        thread.join()


_real_getaddrinfo = socket.getaddrinfo


class FakeDns(dict):
    """Fake names for socket.getaddrinfo: ``dns["hook.test"] = ["127.0.0.1"]``, or a list of
    such lists: one per resolution, the last one repeated (a name that rebinds). Other names
    and IP literals resolve as usual. ``lookups`` counts the resolutions of each fake name."""

    def __init__(self):
        super().__init__()
        self.lookups: dict[str, int] = {}

    def getaddrinfo(self, host, port, *args, **kwargs):
        if host not in self:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        count = self.lookups.get(host, 0)
        self.lookups[host] = count + 1
        answers = self[host]
        if answers and isinstance(answers[0], list):
            answers = answers[min(count, len(answers) - 1)]
        results = []
        for address in answers:
            if ipaddress.ip_address(address).version == 4:
                results.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0)))
            else:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 0, 0, 0)))
        return results


def fake_dns(monkeypatch) -> FakeDns:
    """Install a ``FakeDns`` for the test (pytest's ``monkeypatch`` undoes it)."""
    table = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", table.getaddrinfo)
    return table
