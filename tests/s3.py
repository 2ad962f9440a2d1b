"""A real S3 API server for tests: moto's standalone server in a subprocess (not an in-process mock).

``moto_server`` (session): the server on a free 127.0.0.1 port. ``s3_media``: a fresh private
bucket on it, with the settings switched to MEDIA_STORAGE=s3 through the same
``config.storage.s3_storage`` the settings use. Import into ``tests/conftest.py``.

What moto checks and what it does not: a GET without a signature on a private object is
refused (403); the signature's value and the URL's expiry are not verified.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import httpx
import pytest
from botocore.config import Config

from config.storage import s3_storage
from tests.e2e import ROOT, free_port, stop_process

__all__ = ["moto_server", "s3_media"]

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@dataclass
class MotoServer:
    endpoint: str
    client: object  # a boto3 S3 client on the server

    def env(self, bucket: str) -> dict[str, str]:
        """The environment that points a process at ``bucket`` on this server."""
        return {
            "MEDIA_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_REGION_NAME": REGION,
        }


@dataclass
class Bucket:
    name: str
    client: object

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {entry["Key"] for page in pages for entry in page.get("Contents", ())}

    def put(self, key: str, data: bytes = b"x") -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[MotoServer]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_it_answers(endpoint, process, log_path)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(signature_version="s3v4"),
        )
        yield MotoServer(endpoint=endpoint, client=client)
    finally:
        stop_process(process)


def _wait_until_it_answers(endpoint: str, process: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(endpoint, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("moto_server did not start: " + log_path.read_text(errors="replace")[-3000:])


@pytest.fixture
def s3_media(moto_server, settings, monkeypatch) -> Bucket:
    """A new empty bucket; the media storage is S3 on it for this test (URLs valid 900 s)."""
    bucket = Bucket(name=f"media-{uuid.uuid4().hex[:12]}", client=moto_server.client)
    moto_server.client.create_bucket(Bucket=bucket.name)
    for name, value in moto_server.env(bucket.name).items():
        monkeypatch.setenv(name, value)
    settings.MEDIA_STORAGE = "s3"
    settings.MEDIA_URL_EXPIRY = 900
    # Django's setting_changed handler resets default_storage, which every FileField uses.
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(expiry=settings.MEDIA_URL_EXPIRY)}
    return bucket
