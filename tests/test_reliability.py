"""Crashes, double delivery, lost messages and load, with the app's real processes.

Each test runs uvicorn and qcluster processes on a database of their own (a SQLite file,
or a fresh PostgreSQL database when DATABASE_URL points at PostgreSQL) and the real
google-genai client against the fake Gemini server.
"""

import asyncio
import json
import os
import sys

import httpx
import pytest

from tests.e2e import Stack, wait_until
from tests.fakegemini import FakeGemini, delay, ok

pytestmark = pytest.mark.queue

ON_REDIS = bool(os.environ.get("REDIS_URL"))


@pytest.fixture
def fake():
    server = FakeGemini().start()
    yield server
    server.stop()


def gemini_stack(tmp_path, fake, **env) -> Stack:
    settings = {
        "FITTING_ENGINE": "gemini",
        "GEMINI_API_KEY": "test-key",
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_RETRY_INITIAL_DELAY": "0.05",
        "GEMINI_RETRY_MAX_DELAY": "0.2",
        "FITTING_RESULT_CACHE": "false",
        "FITTING_STEP_CACHE": "false",  # every step calls the engine: the count below means something
        "FITTING_START_RATE": "100000/minute",
        **env,
    }
    return Stack(tmp_path, **settings).prepare()


def sweep(stack: Stack, func: str = "fitting.tasks.sweep_fittings") -> dict:
    """Run the sweep (or one of its services) in the stack, as its Schedule would; what it returned."""
    module, name = func.rsplit(".", 1)
    out = stack.python(f"import json\nfrom {module} import {name}\nprint('SWEPT', json.dumps({name}()))")
    return json.loads(next(line[6:] for line in out.splitlines() if line.startswith("SWEPT ")))


def move_into_the_past(stack: Stack, job_id: str, field: str, seconds_setting: str) -> None:
    """Set a job's ``field`` further in the past than the setting the sweep compares it with."""
    stack.python(
        "from datetime import timedelta\nfrom django.conf import settings\nfrom django.utils import timezone\n"
        "from fitting.models import FittingResult\n"
        f"past = timezone.now() - timedelta(seconds=settings.{seconds_setting} + 1)\n"
        f"assert FittingResult.objects.filter(id='{job_id}').update({field}=past) == 1"
    )


def test_killed_cluster_mid_step_ends_truthfully_and_reprocess_completes(tmp_path, fake):
    stack = gemini_stack(tmp_path, fake)
    try:
        stack.start_web()
        stack.start_cluster()
        fake.script_image(ok(), delay(30))  # top finishes; bottom hangs until the kill
        with stack.client() as client:
            job_id = stack.start_job(client)
            wait_until(lambda: len(fake.image_requests) >= 2, 60, "the second step to start")
            stack.kill("worker")  # SIGKILL the whole cluster while `bottom` is running
            row = stack.job_row(job_id)
            assert (row["status"], row["current_step"], row["steps"]) == ("processing", "bottom", ["top"])
            assert sweep(stack)["timedOut"] == 0  # before its deadline, the job is left alone
            assert stack.job_row(job_id)["status"] == "processing"
            # Past its deadline and the grace (the database's deadline_at moved, not the clock):
            move_into_the_past(stack, job_id, "deadline_at", "FITTING_SWEEP_GRACE")
            assert sweep(stack)["timedOut"] == 1
            row = stack.job_row(job_id)
            assert (row["status"], row["failed_step"], row["error_code"]) == ("timeout", "bottom", "TIMEOUT")
            assert row["steps"] == ["top"]
            calls_before = len(fake.image_requests)
            out = stack.manage("reprocess_failed_fittings", job_id, "--sync")
            assert job_id in out
            row = stack.job_row(job_id)
            assert row["status"] == "completed", (row, out)
            assert row["attempt"] == 2
            assert row["steps"] == ["bottom", "final", "outer", "top"]  # one image per step, none twice
            assert len(fake.image_requests) - calls_before == 2  # only bottom and outer were redone
            job = client.get(f"/api/virtual-fitting/{job_id}").json()
            assert job["status"] == "completed" and client.get(job["resultImageUrl"]).status_code == 200
    finally:
        stack.stop()


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("sqlite") or not os.environ.get("DATABASE_URL"),
    reason="two clusters on one database: the PostgreSQL run",
)
def test_two_clusters_and_a_task_delivered_twice_run_the_job_once(tmp_path, fake):
    stack = gemini_stack(tmp_path, fake)
    try:
        stack.start_web()
        stack.start_cluster("worker")
        stack.start_cluster("worker2")
        fake.script_image(delay(1), delay(1), delay(1))
        with stack.client() as client:
            job_id = stack.start_job(client)
            stack.python(
                f"from fitting.services.start import fitting_enqueue; fitting_enqueue(job_id='{job_id}', attempt=1)"
            )
            job = stack.wait_for_job(client, job_id)
        assert job["status"] == "completed"
        wait_until(
            lambda: "already taken" in stack.output("worker", tail=None) + stack.output("worker2", tail=None),
            60,
            "the second delivery to be skipped",
        )
        assert len(fake.image_requests) == 3
        assert stack.job_row(job_id)["steps"] == ["bottom", "final", "outer", "top"]
    finally:
        stack.stop()


@pytest.mark.skipif(not ON_REDIS, reason="the Redis broker's at-most-once delivery: the Redis run")
def test_message_lost_with_a_killed_cluster_is_recovered_by_the_sweep(tmp_path, fake):
    stack = gemini_stack(
        tmp_path,
        fake,
        FITTING_WORKERS="1",
    )
    try:
        stack.start_web()
        stack.start_cluster()
        fake.script_image(delay(60))  # the one worker is busy with the first job
        with stack.client() as client:
            items = stack.one_item_per_category(client)[:1]
            busy = stack.start_job(client, items)
            wait_until(lambda: fake.image_requests, 60, "the first job to reach the engine")
            waiting = stack.start_job(client, items)  # its message is on Redis when the POST returns
            wait_until(
                lambda: (
                    "QUEUED 0"
                    in stack.python(
                        "from django_q.brokers import get_broker\nprint('QUEUED', get_broker().queue_size())"
                    )
                ),
                60,
                "the cluster to take the second message off Redis into its own queue",
            )
            stack.kill("worker")
            assert stack.job_row(waiting)["status"] == "processing"
            assert (
                sweep(stack, "fitting.services.lifecycle.fitting_requeue_lost") == 0
            )  # not yet waiting for long: not lost
            move_into_the_past(stack, waiting, "enqueued_at", "FITTING_REQUEUE_AFTER")
            assert sweep(stack, "fitting.services.lifecycle.fitting_requeue_lost") == 1
            stack.start_cluster("worker-after")
            job = stack.wait_for_job(client, waiting, timeout=60)
            assert job["status"] == "completed", job
            assert stack.job_row(busy)["status"] == "processing"  # until its deadline; then the sweep
    finally:
        stack.stop()


def test_load_many_concurrent_posts_all_complete_once(tmp_path, fake):
    jobs_wanted = 100
    stack = gemini_stack(tmp_path, fake, FITTING_WORKERS="8")
    try:
        stack.start_web()
        stack.start_cluster()
        users = stack.make_users(5)
        with stack.client() as client:
            items = stack.one_item_per_category(client)

        async def post_all() -> list[tuple[str, int, str]]:
            async with httpx.AsyncClient(base_url=stack.base, timeout=120) as client:

                async def one(n: int):
                    token, photo_url = users[n % len(users)]
                    chosen = items[: 1 + n % 3]
                    response = await client.post(
                        "/api/virtual-fitting",
                        headers={"Authorization": f"Token {token}"},
                        json={"userPhotoUrl": photo_url, "items": chosen},
                    )
                    return token, response.status_code, response.json().get("jobId"), len(chosen)

                return await asyncio.gather(*(one(n) for n in range(jobs_wanted)))

        results = asyncio.run(post_all())
        assert [status for _, status, _, _ in results] == [202] * jobs_wanted, stack.output("web")
        expected_steps = sum(steps for *_, steps in results)
        for token, _, job_id, steps in results:
            with stack.client(token) as client:
                job = stack.wait_for_job(client, job_id, timeout=300)
                assert job["status"] == "completed", job
                assert len(job["steps"]) == steps
        assert len(fake.image_requests) == expected_steps  # nothing ran twice
        logs = stack.output("worker", tail=None) + stack.output("web", tail=None)
        assert "database is locked" not in logs
    finally:
        stack.stop()


def test_sigterm_to_the_cluster_main_process_lets_the_running_step_finish(tmp_path, fake):
    import signal

    stack = gemini_stack(tmp_path, fake)
    try:
        stack.start_web()
        cluster = stack.start_cluster()
        fake.script_image(delay(3))
        with stack.client() as client:
            job_id = stack.start_job(client, stack.one_item_per_category(client)[:1])
            wait_until(lambda: fake.image_requests, 60, "the step to start")
            cluster.send_signal(signal.SIGTERM)  # the main process only, as in the README
            assert cluster.wait(timeout=60) == 0
            row = stack.job_row(job_id)
        assert row["status"] == "completed", (row, stack.output("worker"))
        assert len(row["steps"]) == 2 and "final" in row["steps"]  # its step and the final image
    finally:
        stack.stop()


def test_a_sigterm_to_the_whole_group_of_run_workers_lets_the_running_step_finish(tmp_path, fake):
    """What Ctrl-C, `timeout`, honcho and systemd's default KillMode do: signal every process."""
    import signal

    stack = gemini_stack(tmp_path, fake)
    try:
        stack.start_web()
        workers = stack._spawn("worker", [sys.executable, "manage.py", "run_workers"])
        fake.script_image(delay(3))
        with stack.client() as client:
            job_id = stack.start_job(client, stack.one_item_per_category(client)[:1])
            wait_until(lambda: fake.image_requests, 60, "the step to start")
            os.killpg(workers.pid, signal.SIGTERM)
            assert workers.wait(timeout=120) == 0, stack.output("worker")
            row = stack.job_row(job_id)
        assert row["status"] == "completed", (row, stack.output("worker"))
        assert len(row["steps"]) == 2 and "final" in row["steps"]
    finally:
        stack.stop()
