"""POST → completed through real processes: uvicorn and a qcluster, on their own database."""

import io

import pytest
from PIL import Image

pytestmark = pytest.mark.queue


def test_post_then_completed_by_a_real_qcluster(stack):
    with stack.client() as client:
        job = stack.wait_for_job(client, stack.start_job(client))
        assert job["status"] == "completed", job
        assert job["llmMessage"]
        assert [s["status"] for s in job["steps"]] == ["completed"] * 3
        photo = Image.open(io.BytesIO(client.get(stack.photo_url).content))
        result = client.get(job["resultImageUrl"])
        assert result.status_code == 200
        assert Image.open(io.BytesIO(result.content)).size == photo.size


def raw_get(stack, target: str) -> int:
    """The status of a GET sent byte for byte (HTTP clients would normalise the dots away)."""
    import socket

    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(64).decode("latin-1")
    return int(head.split(" ", 2)[1])


def test_media_path_tricks_through_uvicorn(stack):
    from urllib.parse import urlparse

    photo = urlparse(stack.photo_url).path  # /media/photos/<name>
    name = photo.rsplit("/", 1)[1]
    assert raw_get(stack, photo) == 404  # anonymous
    for trick in ("items/../photos/", "items/%2e%2e/photos/", "items/..%2fphotos/", "items/%2E%2E%2Fphotos/"):
        assert raw_get(stack, f"/media/{trick}{name}") == 404, trick
    with stack.client() as client:  # the owner, by token
        assert client.get(stack.photo_url).status_code == 200
