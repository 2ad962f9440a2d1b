"""POST → completed through real processes: uvicorn and a qcluster, on their own database."""

import io

import pytest
from PIL import Image

from tests.e2e import Stack

pytestmark = pytest.mark.queue


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path).prepare()
    stack.start_web()
    stack.start_cluster()
    yield stack
    stack.stop()


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
