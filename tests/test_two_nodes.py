"""Two machines' worth of processes on one PostgreSQL, one Redis broker and one S3 bucket.

Two uvicorn processes and two qcluster nodes, each with its own empty MEDIA_ROOT, as the README's
production section runs them, under config.settings.production. Run by `.ci/run` in a stage of its
own (PostgreSQL and Redis are needed; skipped elsewhere).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e import PRODUCTION, Stack, wait_until
from tests.fakegemini import FakeGemini, delay

pytestmark = [
    pytest.mark.twonodes,
    pytest.mark.skipif(
        not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")),
        reason="two nodes need PostgreSQL and Redis (the two-node stage of .ci/run)",
    ),
]


@pytest.fixture
def fake():
    server = FakeGemini().start()
    yield server
    server.stop()


@pytest.fixture
def nodes(tmp_path, fake, moto_server):
    bucket = f"fitting-{uuid.uuid4().hex[:12]}"
    moto_server.client.create_bucket(Bucket=bucket)
    env = {
        **PRODUCTION,
        **moto_server.env(bucket),
        "FITTING_ENGINE": "gemini",
        "GEMINI_API_KEY": "test-key",
        "GEMINI_BASE_URL": fake.base_url,
        "FITTING_RESULT_CACHE": "false",
        "FITTING_STEP_CACHE": "false",  # every step calls the engine: the count below means something
        "FITTING_WORKERS": "2",
        "FITTING_START_RATE": "100000/minute",
    }
    first = Stack(tmp_path / "a", **env).prepare()
    shown = first.python("from django.conf import settings; print('DEBUG', settings.DEBUG, settings.SERVE_MEDIA)")
    assert "DEBUG False False" in shown.splitlines(), shown  # the production settings, the bucket serving media
    second = Stack(tmp_path / "b", share=first, **env)
    try:
        for stack, name in ((first, "worker-a"), (second, "worker-b")):
            stack.start_web()
            stack.start_cluster(name)
        yield first, second
    finally:
        second.stop()
        first.stop()


def unsigned(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=""))


def media_files(stack: Stack) -> list:
    root = stack.tmp / "media"
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def test_jobs_posted_to_either_web_complete_on_both_nodes(nodes, fake):
    first, second = nodes
    fake.script_image(*[delay(1)] * 8)  # each step takes a moment, so one node cannot take them all
    with first.client() as a, second.client() as b:
        items = first.one_item_per_category(a)[:1]
        jobs = [first.start_job(a, items) if n % 2 else second.start_job(b, items) for n in range(8)]
        done = [first.wait_for_job(a, job_id) for job_id in jobs]
        assert [job["status"] for job in done] == ["completed"] * 8, done
        assert len(fake.image_requests) == 8  # one engine call per step, no job ran twice
        claims = {
            name: stack.output(name, tail=None).count(": claimed")
            for stack, name in ((first, "worker-a"), (second, "worker-b"))
        }
        assert sum(claims.values()) == 8 and all(claims.values()), claims  # both nodes took jobs

        job = b.get(f"/api/virtual-fitting/{jobs[0]}").json()  # read through the other web
        for url in [job["resultImageUrl"], *(step["imageUrl"] for step in job["steps"])]:
            assert "X-Amz-Signature=" in url
            loaded = httpx.get(url, timeout=30)
            assert loaded.status_code == 200 and loaded.headers["content-type"] == "image/jpeg"
            assert httpx.get(unsigned(url), timeout=30).status_code == 403
    assert media_files(first) == [] and media_files(second) == []  # everything is in the bucket


def test_a_node_killed_mid_step_is_recovered_by_the_sweep_and_a_reprocess(nodes, fake):
    first, second = nodes
    first.kill("worker-a")  # only node b runs jobs now (it had none; killed and waited for, never leaked)
    fake.script_image(delay(60))  # the step hangs until node b is killed
    with first.client() as a:
        items = first.one_item_per_category(a)[:1]
        step = items[0]["category"]
        job_id = first.start_job(a, items)
        wait_until(lambda: fake.image_requests, 60, "node b to start the step")
        second.kill("worker-b")  # the machine is gone
        row = first.job_row(job_id)
        assert (row["status"], row["current_step"]) == ("processing", step)

        first.python(
            "from datetime import timedelta\nfrom django.conf import settings\nfrom django.utils import timezone\n"
            "from fitting.models import FittingResult\n"
            "past = timezone.now() - timedelta(seconds=settings.FITTING_SWEEP_GRACE + 1)\n"
            f"FittingResult.objects.filter(id='{job_id}').update(deadline_at=past)\n"
            "from fitting.tasks import sweep_fittings\nprint(sweep_fittings())"
        )
        row = first.job_row(job_id)
        assert (row["status"], row["failed_step"], row["error_code"]) == ("timeout", step, "TIMEOUT")

        out = first.manage("reprocess_failed_fittings", job_id, "--sync")
        job = a.get(f"/api/virtual-fitting/{job_id}").json()
        assert job["status"] == "completed", (job, out)
        assert httpx.get(job["resultImageUrl"], timeout=30).status_code == 200
