"""Helpers for end-to-end tests: the app's real processes on their own database."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

# config.settings.production as the stages that prove the deployment run it (.ci/clean_install.py,
# tests/test_two_nodes.py): what it requires, over plain HTTP on 127.0.0.1 (no TLS proxy in front,
# so no redirect to https). Storage, engine and database are each stage's own.
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "ci-only-" + "0123456789abcdefghijklmnopqrstuvwxyz" * 2,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
}


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``condition`` until it returns something true, and return that.

    Fails after ``timeout`` seconds: a bound against a hang, never the thing tested, so make it
    generous. Tests wait for the event they need this way, never for a fixed time.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


SEPARATES = ("top", "bottom", "outer")


class Stack:
    """uvicorn + qcluster processes on a database of their own (never the test transaction)."""

    def __init__(self, tmp: Path, *, share: Stack | None = None, **env: str):
        """``share``: another stack whose database (and demo user) this one uses: a second node."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "MEDIA_ROOT": str(tmp / "media"),
            "PYTHONUNBUFFERED": "1",
            # As in the test settings: the fake Gemini's plain answer is the photo with a marker,
            # which the quality gate rightly rejects; a test of the gate turns it on.
            "FITTING_QUALITY_GATE": "off",
            **env,
        }
        self.owns_database = share is None
        self.database = share.database if share else _own_database(self.env.get("DATABASE_URL", ""), tmp)
        self.env["DATABASE_URL"] = self.database.url
        self.processes: dict[str, subprocess.Popen] = {}
        self.token = share.token if share else ""
        self.photo_url = share.photo_url if share else ""

    def manage(self, *args: str, **env: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def prepare(self) -> Stack:
        self.manage("migrate", "--noinput")
        # seed_demo needs DEBUG, which only the local settings allow: it seeds the same database and
        # storage under them; every process keeps its own settings.
        out = self.manage("seed_demo", DJANGO_SETTINGS_MODULE="config.settings.local", DJANGO_DEBUG="true")
        self.token = re.search(r"DEMO_TOKEN=(\w+)", out).group(1)
        self.photo_url = re.search(r"demo photo url: (\S+)", out).group(1)
        return self

    def python(self, code: str) -> str:
        """Run ``code`` in a Django shell of the stack (its settings, its database)."""
        return self.manage("shell", "-c", code)

    def make_users(self, count: int) -> list[tuple[str, str]]:
        """``count`` users, each with a token and the demo photo: [(token, photo_url)]."""
        out = self.python(
            "from django.contrib.auth import get_user_model\n"
            "from users.services import token_issue\n"
            "from users.models import UserImage\n"
            "demo = UserImage.objects.filter(owner__username='demo').first()\n"
            f"for n in range({count}):\n"
            "    user, _ = get_user_model().objects.get_or_create(username=f'load{n}')\n"
            "    _, token = token_issue(user=user)\n"
            "    photo = UserImage.objects.filter(owner=user).first() or UserImage.objects.create(\n"
            "        owner=user, image=demo.image.name, width=demo.width, height=demo.height,\n"
            "        content_hash=demo.content_hash)\n"
            "    print('USER', token, photo.image.url)\n"
        )
        return [tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("USER ")]

    def start_web(self) -> None:
        self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "config.serve",  # as the deploy unit and the Procfile start it
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
        )

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(healthy, 60, "uvicorn to answer /healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.output('web')}") from None

    def start_cluster(self, name: str = "worker") -> subprocess.Popen:
        return self._spawn(name, [sys.executable, "manage.py", "qcluster"])

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.processes[name] = process
        return process

    def output(self, name: str, *, tail: int | None = 5000) -> str:
        """What a process wrote (its last ``tail`` characters; all of it with ``tail=None``)."""
        text = (self.tmp / f"{name}.log").read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Token {token or self.token}"}, timeout=60)

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a crashed machine, not a shutdown)."""
        process = self.processes.pop(name)
        os.killpg(process.pid, 9)
        process.wait()

    def job_row(self, job_id: str) -> dict:
        """The job as stored, read through the stack's own settings."""
        import json

        out = self.python(
            "import json\nfrom fitting.models import FittingResult\n"
            f"job = FittingResult.objects.get(id='{job_id}')\n"
            "print('ROW', json.dumps({'status': job.status, 'failed_step': job.failed_step, "
            "'current_step': job.current_step, 'attempt': job.attempt, 'error_code': job.error_code, "
            "'steps': sorted(job.images.values_list('step', flat=True))}))"
        )
        return json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW ")))

    @staticmethod
    def one_item_per_category(client: httpx.Client) -> list[dict]:
        """A top, a bottom and an outer from the catalogue, as request items (the demo catalogue's
        dress and shoes left out: a dress excludes the top and the bottom, and three is the limit)."""
        chosen = {item["category"]: item for item in client.get("/api/items").json() if item["category"] in SEPARATES}
        return [{"itemId": item["id"], "category": category} for category, item in chosen.items()]

    def start_job(self, client: httpx.Client, items: list[dict] | None = None, photo_url: str | None = None) -> str:
        """POST a job (one garment per category unless ``items``); its id."""
        body = {"userPhotoUrl": photo_url or self.photo_url, "items": items or self.one_item_per_category(client)}
        response = client.post("/api/virtual-fitting", json=body)
        assert response.status_code == 202, response.text
        return response.json()["jobId"]

    def wait_for_job(self, client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
        """The job as the API shows it once it is no longer processing."""

        seen: list[dict] = []

        def finished() -> dict | None:
            seen.append(client.get(f"/api/virtual-fitting/{job_id}").json())
            return seen[-1] if seen[-1]["status"] != "processing" else None

        try:
            return wait_until(finished, timeout, f"job {job_id} to finish", interval=0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {seen[-1]}\n{self.output('worker')}") from None

    def stop(self) -> None:
        self.stop_processes()
        if self.owns_database:
            self.database.drop()

    def stop_processes(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


class _Database:
    def __init__(self, url: str, admin_url: str | None = None, name: str | None = None):
        self.url, self.admin_url, self.name = url, admin_url, name

    def drop(self) -> None:
        if self.admin_url:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _own_database(url: str, tmp: Path) -> _Database:
    """A fresh database for the stack: a new one on the same PostgreSQL server, else a SQLite file."""
    if not url.startswith(("postgres://", "postgresql://")):
        return _Database(f"sqlite:///{tmp / 'db.sqlite3'}")
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    parts = urlsplit(url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    name = f"fitting_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _Database(urlunsplit(parts._replace(path=f"/{name}")), admin_url, name)
