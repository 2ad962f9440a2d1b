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
        items = client.get("/api/items").json()
        chosen = {item["category"]: item for item in items}
        response = client.post(
            "/api/virtual-fitting",
            json={
                "userPhotoUrl": stack.photo_url,
                "items": [{"itemId": i["id"], "category": c} for c, i in chosen.items()],
            },
        )
        assert response.status_code == 202, response.text
        job = stack.wait_for_job(client, response.json()["jobId"])
        assert job["status"] == "completed", job
        assert job["llmMessage"]
        assert [s["status"] for s in job["steps"]] == ["completed"] * 3
        photo = Image.open(io.BytesIO(client.get(stack.photo_url).content))
        result = client.get(job["resultImageUrl"])
        assert result.status_code == 200
        assert Image.open(io.BytesIO(result.content)).size == photo.size
