"""The quality gate in the job (issue 22): each step's answer checked, retried, recorded.

The fake Gemini answers with ``tests.quality_modes`` answers made from what it was sent
(the real photo of tests/data/photos and a demo garment), so the checks judge what a real
model's good and bad answers look like.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone, translation
from PIL import Image

from core.errors import QuotaExceededError
from fitting import costs, pipeline
from fitting.engines.base import MIN_ATTEMPT_SECONDS
from fitting.models import FittingResult, Item, MetricCounter, StepAttempt, UsageDay
from fitting.serializers import JobOutputSerializer
from fitting.services.erasure import fitting_delete
from fitting.services.items import item_save
from fitting.services.lifecycle import fitting_cancel, fitting_reprocess
from tests.factories import make_job, run_now, start_job
from tests.fakegemini import answer_mode, delay, fail, text
from tests.quality_modes import MODES
from users.services import photo_create

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "data" / "photos"
SAMPLES = ROOT / "demo" / "samples"
CAUGHT = ["unchanged", "product", "face_replaced", "recoloured", "background"]


def real_photo(owner, name: str = "grace_hopper.jpg", long_side: int = 512):
    image = Image.open(PHOTOS / name).convert("RGB")
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return photo_create(owner=owner, upload=SimpleUploadedFile("photo.jpg", buffer.getvalue()))


def real_item(category: str = "top", name: str = "top_navy_tshirt.png") -> Item:
    item = Item(name=name, category=category)
    return item_save(item=item, image=SimpleUploadedFile(name, (SAMPLES / name).read_bytes()))


@pytest.fixture
def gate(settings, fake_gemini):
    settings.FITTING_QUALITY_GATE = "on"
    settings.FITTING_QUALITY_RETRIES = 2
    settings.FITTING_QUALITY_POLICY = "fail"
    settings.FITTING_QUALITY_JUDGE = "off"
    settings.FITTING_QUALITY_THRESHOLDS = {}
    return fake_gemini


def steps(job: FittingResult) -> list[dict]:
    job = FittingResult.objects.prefetch_related("items", "images").get(id=job.id)
    return JobOutputSerializer(job).data["steps"]


@pytest.mark.parametrize("mode", CAUGHT)
def test_a_bad_answer_is_caught_by_its_check_and_the_good_retry_continues(gate, user, mode):
    gate.script_image(answer_mode(mode), answer_mode("good"))
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.status == "completed", job.error_message
    calls = gate.image_requests
    assert len(calls) == 2
    seeds = [call.generation_config.get("seed") for call in calls]
    assert None not in seeds and seeds[0] != seeds[1]  # the retry sends a new seed
    # The same inputs: the same person and garment, both times.
    assert calls[0].images[0].tobytes() == calls[1].images[0].tobytes()
    assert calls[0].images[1].tobytes() == calls[1].images[1].tobytes()
    first, second = StepAttempt.objects.filter(job=job).order_by("number")
    assert (first.outcome, first.passed, second.outcome, second.passed) == ("rejected", False, "accepted", True)
    assert MODES[mode] in first.failed_checks
    assert first.image.name.startswith("attempts/") and first.image.storage.exists(first.image.name)
    assert second.image.name == job.images.get(step="top").image.name  # the step's file, not a copy
    assert [first.seed, second.seed] == seeds
    assert steps(job)[0]["attempts"] == 2 and steps(job)[0]["qualityPassed"] is True
    # Cost counts every attempt: 2 calls of the fake's 1290 + 1290 tokens.
    assert (job.input_tokens, job.output_tokens) == (2 * 1290, 2 * 1290)
    counters = {(c.name, c.labels): c.value for c in MetricCounter.objects.all()}
    assert counters[("fitting_step_attempts_total", '{"engine":"gemini","outcome":"rejected"}')] == 1
    assert counters[("fitting_step_attempts_total", '{"engine":"gemini","outcome":"accepted"}')] == 1
    # /metrics counts the rejected attempt's tokens too (what fitting_cost_usd_total prices).
    assert counters[("fitting_tokens_total", json.dumps({"kind": "input", "model": job.model}).replace(" ", ""))] == (
        2 * 1290
    )
    assert (
        counters[
            ("fitting_quality_checks_total", json.dumps({"check": MODES[mode], "outcome": "failed"}).replace(" ", ""))
        ]
        >= 1
    )


def test_all_bad_answers_fail_the_job_after_one_plus_retries_calls_and_give_the_quota_slot_back(gate, user, settings):
    settings.FITTING_DAILY_QUOTA = 1
    gate.script_image(*[answer_mode("unchanged")] * 5)
    photo, item = real_photo(user), real_item()
    job = run_now(start_job(user, photo, item))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "top", "QUALITY_CHECK_FAILED")
    assert len(gate.image_requests) == 1 + settings.FITTING_QUALITY_RETRIES
    attempts = list(StepAttempt.objects.filter(job=job).order_by("number"))
    assert [(a.number, a.outcome) for a in attempts] == [(1, "rejected"), (2, "rejected"), (3, "rejected")]
    assert all("changed" in a.failed_checks for a in attempts)
    assert all(a.image and a.image.storage.exists(a.image.name) for a in attempts)
    assert not job.images.exists()
    with translation.override("en"):
        body = JobOutputSerializer(FittingResult.objects.get(id=job.id)).data
    assert body["error"] == {"code": "QUALITY_CHECK_FAILED", "message": "The result did not meet the quality bar."}
    with translation.override("ko"):
        korean = JobOutputSerializer(FittingResult.objects.get(id=job.id)).data["error"]["message"]
    assert korean == "결과 이미지가 품질 기준을 충족하지 못했습니다."
    assert body["steps"][0]["attempts"] == 3 and body["steps"][0]["qualityPassed"] is False
    assert job.input_tokens == 3 * 1290  # the failed attempts are paid for
    # Nothing usable was made: the day's only slot is free again.
    second = start_job(user, photo, item)
    assert second.status == "processing"


def test_a_job_gives_its_slot_back_once_however_often_it_is_reprocessed(gate, user, settings):
    settings.FITTING_DAILY_QUOTA = 2
    settings.FITTING_QUALITY_RETRIES = 0
    gate.script_image(*[answer_mode("unchanged")] * 3)
    photo, item = real_photo(user), real_item()
    failing = run_now(start_job(user, photo, item))
    assert failing.error_code == "QUALITY_CHECK_FAILED" and failing.quota_given_back
    start_job(user, photo, real_item("bottom", "bottom_blue_jeans.png"))  # pending: it holds one slot
    for _ in range(2):  # staff reprocess the failed job; it fails the gate again
        fitting_reprocess(job=failing)
        failing = run_now(failing)
        assert failing.error_code == "QUALITY_CHECK_FAILED"
    usage = UsageDay.objects.get(user=user)
    assert (usage.jobs_started, usage.jobs_given_back) == (1, 1)  # the pending job's slot is still counted


def test_slots_given_back_in_a_day_are_at_most_the_days_quota(gate, user, settings):
    """A user whose jobs always fail the gate starts at most twice the quota in a day."""
    settings.FITTING_DAILY_QUOTA = 2
    settings.FITTING_QUALITY_RETRIES = 0
    gate.script_image(*[answer_mode("unchanged")] * 10)
    photo, item = real_photo(user), real_item()
    for _ in range(4):
        job = run_now(start_job(user, photo, item))
        assert job.error_code == "QUALITY_CHECK_FAILED"
    assert [job.quota_given_back for job in FittingResult.objects.order_by("created_at")] == [True, True, False, False]
    with pytest.raises(QuotaExceededError):
        start_job(user, photo, item)
    usage = UsageDay.objects.get(user=user)
    assert (usage.jobs_started, usage.jobs_given_back, usage.engine_calls) == (2, 2, 4)


def test_settings_retries_zero_makes_one_call(gate, user, settings):
    settings.FITTING_QUALITY_RETRIES = 0
    gate.script_image(answer_mode("unchanged"), answer_mode("good"))
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.error_code == "QUALITY_CHECK_FAILED"
    assert len(gate.image_requests) == 1


@pytest.mark.parametrize(
    ("name", "long_side", "category", "garment"),
    [
        ("grace_hopper.jpg", 512, "top", "top_navy_tshirt.png"),
        ("grace_hopper.jpg", 1024, "top", "top_white_shirt.png"),
        ("astronaut.png", 2048, "top", "top_navy_tshirt.png"),
        ("astronaut.png", 1024, "outer", "outer_khaki_trench.png"),
    ],
)
def test_good_answers_pass_at_every_size(gate, user, name, long_side, category, garment):
    gate.script_image(answer_mode("good", category))
    job = run_now(start_job(user, real_photo(user, name, long_side), real_item(category, garment)))
    assert job.status == "completed", job.error_message
    assert len(gate.image_requests) == 1  # no false rejection
    (attempt,) = StepAttempt.objects.filter(job=job)
    assert attempt.passed is True and attempt.failed_checks == []
    assert set(attempt.scores["checks"]) == {"changed", "identity", "scene", "garment", "not_product"}
    assert job.step_metrics[category]["quality_passed"] is True


def test_accept_best_keeps_the_best_scoring_attempt_marked_not_passed(gate, user, settings):
    settings.FITTING_QUALITY_POLICY = "accept_best"
    settings.FITTING_QUALITY_RETRIES = 1
    gate.script_image(answer_mode("unchanged"), answer_mode("recoloured"))
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.status == "completed", job.error_message
    attempts = list(StepAttempt.objects.filter(job=job).order_by("number"))
    assert len(attempts) == 2 and not any(a.passed for a in attempts)
    best = max(attempts, key=lambda a: a.scores["score"])
    assert [a.outcome for a in attempts] == ["best" if a == best else "rejected" for a in attempts]
    (other,) = [a for a in attempts if a != best]
    kept = Image.open(job.images.get(step="top").image).convert("RGB").tobytes()
    assert kept == Image.open(best.image).convert("RGB").tobytes()  # the best one's pixels, not just its size
    assert kept != Image.open(other.image).convert("RGB").tobytes()
    step = steps(job)[0]
    assert (step["attempts"], step["qualityPassed"]) == (2, False)
    assert job.input_tokens == 2 * 1290  # the best one's tokens are not counted twice


VERDICT = {
    "same_person": True,
    "garment_applied": True,
    "garment_faithful": False,
    "other_clothes_kept": True,
    "artifacts": ["blurred collar"],
    "score": 7,
}


def test_the_judge_verdict_is_parsed_recorded_shown_and_its_tokens_counted(gate, user, settings, staff_client):
    settings.FITTING_QUALITY_JUDGE = "gemini"
    image_model, text_model = settings.GEMINI_IMAGE_MODEL, settings.GEMINI_TEXT_MODEL
    # Prices that tell the two models apart: the judge's tokens are the text model's.
    settings.FITTING_PRICES = {image_model: {"input": 1, "output": 100}, text_model: {"input": 3, "output": 7}}
    gate.script_image(answer_mode("good"))  # 1,290 tokens in, 1,290 out
    gate.script_text(
        text(json.dumps(VERDICT), usage={"promptTokenCount": 2000, "candidatesTokenCount": 50, "totalTokenCount": 2050})
    )
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.status == "completed", job.error_message
    judge_call = gate.text_requests[0]
    assert judge_call.generation_config["responseMimeType"] == "application/json"
    assert "garment_faithful" in judge_call.generation_config["responseSchema"]["properties"]
    assert len(judge_call.images) == 3  # input, garment, answer
    (attempt,) = StepAttempt.objects.filter(job=job)
    assert attempt.scores["judge"] == {**VERDICT, "score": 7.0}
    assert (job.input_tokens, job.output_tokens) == (1290, 1290)  # the image call's
    assert (job.judge_input_tokens, job.judge_output_tokens) == (2000, 50)
    want = (Decimal(1290 * 1 + 1290 * 100) + Decimal(2000 * 3 + 50 * 7)) / 1_000_000
    assert costs.job_cost(job) == want
    assert UsageDay.objects.get(user=user).cost == want  # the ledger prices each model at its rate
    counters = MetricCounter.objects.filter(name="fitting_tokens_total")
    tokens = {(json.loads(c.labels)["model"], json.loads(c.labels)["kind"]): c.value for c in counters}
    assert tokens == {
        (image_model, "input"): 1290,
        (image_model, "output"): 1290,
        (text_model, "input"): 2000,
        (text_model, "output"): 50,
    }
    page = staff_client.get(f"/admin/fitting/fittingresult/{job.id}/change/").content.decode()
    assert "7/10" in page and "garment_faithful" in page and "blurred collar" in page
    assert "$0.1366" in page  # the job's cost: $0.13029 for the image, $0.00635 for the judge


def test_a_failing_judge_never_fails_the_step(gate, user, settings):
    settings.FITTING_QUALITY_JUDGE = "gemini"
    gate.script_image(answer_mode("good"))
    gate.script_text(fail(400, "judge refused"))  # the next text call, the message, is answered
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.status == "completed", job.error_message
    assert StepAttempt.objects.get(job=job).scores["judge"] is None
    assert (job.judge_input_tokens, job.judge_output_tokens) == (0, 0)  # no answer, nothing to count
    assert job.llm_message


def test_a_judge_answer_that_is_no_verdict_is_null_and_its_tokens_still_count(gate, user, settings):
    settings.FITTING_QUALITY_JUDGE = "gemini"
    settings.FITTING_PRICES = {
        settings.GEMINI_IMAGE_MODEL: {"input": 1, "output": 100},
        settings.GEMINI_TEXT_MODEL: {"input": 3, "output": 7},
    }
    gate.script_image(answer_mode("good"))
    gate.script_text(
        text("not json at all", usage={"promptTokenCount": 2000, "candidatesTokenCount": 50, "totalTokenCount": 2050})
    )
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.status == "completed", job.error_message
    (attempt,) = StepAttempt.objects.filter(job=job)
    assert attempt.passed is True and attempt.scores["judge"] is None
    assert (job.judge_input_tokens, job.judge_output_tokens) == (2000, 50)  # the call was paid for
    assert costs.job_cost(job) == (Decimal(1290 * 1 + 1290 * 100) + Decimal(2000 * 3 + 50 * 7)) / 1_000_000


def test_a_judge_timing_out_leaves_the_step_passing_with_judge_null(gate, user, settings):
    settings.FITTING_QUALITY_JUDGE = "gemini"
    settings.FITTING_MESSAGE_TIMEOUT = 0.5  # the judge's budget
    gate.script_image(answer_mode("good"))
    gate.script_text(delay(60, text(json.dumps(VERDICT))))  # answers long after the budget (the fake's stop ends it)
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.status == "completed", job.error_message
    assert len(gate.text_requests) == 2  # the judge, then the message
    (attempt,) = StepAttempt.objects.filter(job=job)
    assert attempt.passed is True and attempt.outcome == "accepted"
    assert "judge" in attempt.scores and attempt.scores["judge"] is None
    assert (job.judge_input_tokens, job.judge_output_tokens) == (0, 0)


def test_the_judge_does_not_run_on_a_failed_answer(gate, user, settings):
    settings.FITTING_QUALITY_JUDGE = "gemini"
    settings.FITTING_QUALITY_RETRIES = 0
    gate.script_image(answer_mode("unchanged"))
    run_now(start_job(user, real_photo(user), real_item()))
    assert gate.text_requests == []


class FrozenClock:
    """The pipeline's clock (``fitting.pipeline.timezone``): the real one until ``freeze(at)``."""

    def __init__(self):
        self.at = None

    def now(self):
        return self.at or timezone.now()


@pytest.mark.parametrize("policy", ["fail", "accept_best"])
def test_no_retry_is_made_with_less_than_min_attempt_seconds_left(gate, user, settings, monkeypatch, policy):
    settings.FITTING_QUALITY_POLICY = policy
    gate.script_image(answer_mode("unchanged"), answer_mode("good"))
    job = start_job(user, real_photo(user), real_item())
    clock = FrozenClock()
    monkeypatch.setattr(pipeline, "timezone", clock)

    def time_runs_out_during_the_first_call(request):  # in the fake server's thread, before it answers
        if request.wants_image:
            clock.at = job.deadline_at - timedelta(seconds=MIN_ATTEMPT_SECONDS / 2)

    gate.on_request = time_runs_out_during_the_first_call
    job = run_now(job)
    assert len(gate.image_requests) == 1  # the retry would have had less than MIN_ATTEMPT_SECONDS
    (attempt,) = StepAttempt.objects.filter(job=job)
    assert attempt.passed is False and "changed" in attempt.failed_checks
    if policy == "fail":
        assert (job.status, job.failed_step, job.error_code) == ("failed", "top", "QUALITY_CHECK_FAILED")
        assert attempt.outcome == "rejected"
    else:
        assert job.status == "completed", job.error_message
        assert attempt.outcome == "best"
        assert job.llm_message is None and gate.text_requests == []  # no time left for the message either


@pytest.mark.django_db(transaction=True)
def test_a_cancel_during_a_retry_stops_it(gate, user):
    gate.script_image(*[answer_mode("unchanged")] * 3)

    def cancel_on_the_retry(request):  # runs in the fake server's thread, on its own connection
        try:
            if request.wants_image and len(gate.image_requests) == 2:
                fitting_cancel(job=FittingResult.objects.get())
        finally:
            connection.close()

    gate.on_request = cancel_on_the_retry
    job = run_now(start_job(user, real_photo(user), real_item()))
    assert job.status == "canceled"
    assert len(gate.image_requests) == 2  # no third call
    assert StepAttempt.objects.filter(job=job).count() == 1  # the retry's answer came too late


def test_the_local_engine_is_checked_but_never_retried(user, settings):
    settings.FITTING_ENGINE = "local"
    settings.FITTING_QUALITY_GATE = "on"
    settings.FITTING_QUALITY_RETRIES = 2
    settings.FITTING_QUALITY_POLICY = "fail"
    # Thresholds the local answer cannot reach (it scores 1.0 on identity and scene, a little
    # under 1 on garment and not_product): a retry would be asked for, were it ever retried.
    settings.FITTING_QUALITY_THRESHOLDS = {"garment": 1, "not_product": 1}
    job = run_now(start_job(user, real_photo(user, "astronaut.png", 512), real_item()))
    assert job.status == "completed", job.error_message  # kept whatever the checks say, even with policy fail
    (attempt,) = StepAttempt.objects.filter(job=job)  # one call: no retry
    assert (attempt.number, attempt.outcome, attempt.passed, attempt.seed) == (1, "best", False, None)
    assert set(attempt.failed_checks) == {"garment", "not_product"}
    assert set(attempt.scores["checks"]) == {"changed", "identity", "scene", "garment", "not_product"}
    assert steps(job)[0]["attempts"] == 1 and steps(job)[0]["qualityPassed"] is False


def test_attempts_show_on_the_admin_page_and_the_dashboard_and_go_with_the_job(
    gate, user, staff_client, django_capture_on_commit_callbacks
):
    gate.script_image(answer_mode("face_replaced"), answer_mode("good"))
    job = run_now(start_job(user, real_photo(user), real_item()))
    rejected = StepAttempt.objects.get(job=job, number=1)
    page = staff_client.get(f"/admin/fitting/fittingresult/{job.id}/change/").content.decode()
    assert "identity" in page and rejected.image.url in page
    assert staff_client.get(rejected.image.url).status_code == 200  # staff may see a rejected image
    dashboard = staff_client.get("/admin/dashboard/").content.decode()
    assert 'data-testid="quality"' in dashboard
    assert "<td>2.00</td><td>1</td>" in dashboard  # mean attempts per step, steps
    name = rejected.image.name
    storage = rejected.image.storage
    with django_capture_on_commit_callbacks(execute=True):  # files go after the commit
        fitting_delete(job=job)
    assert not storage.exists(name)


def test_a_reused_step_keeps_its_recorded_scores(gate, user, settings):
    settings.FITTING_STEP_CACHE = True
    gate.script_image(answer_mode("unchanged"), answer_mode("good"), answer_mode("good", "bottom"))
    photo, top = real_photo(user, "astronaut.png", 512), real_item()
    first = run_now(start_job(user, photo, top))
    assert first.status == "completed", first.error_message
    second = start_job(user, photo, top, real_item("bottom", "bottom_blue_jeans.png"))
    step = steps(second)[0]
    assert step["cached"] is True and (step["attempts"], step["qualityPassed"]) == (2, True)
    assert second.step_metrics["top"]["quality"] == first.step_metrics["top"]["quality"]


def test_a_result_cache_hit_keeps_the_recorded_scores_and_stays_out_of_the_dashboards_figures(
    gate, user, settings, staff_client
):
    settings.FITTING_RESULT_CACHE = True
    gate.script_image(answer_mode("unchanged"), answer_mode("good"))
    photo, top = real_photo(user), real_item()
    first = run_now(start_job(user, photo, top))
    assert first.status == "completed", first.error_message
    for _ in range(3):
        hit = start_job(user, photo, top)
        assert hit.cached
        step = steps(hit)[0]
        assert step["cached"] is True and (step["attempts"], step["qualityPassed"]) == (2, True)
        assert StepAttempt.objects.filter(job=hit, shared=True).count() == 1  # its candidate, copied
    # The figures are those of the one job that called the engine: 2 attempts, "changed" passed 1 of 2.
    dashboard = staff_client.get("/admin/dashboard/").content.decode()
    assert "<td>2.00</td><td>1</td>" in dashboard
    assert "<td>50%</td>" in dashboard


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FITTING_QUALITY_THRESHOLDS", '{"face": 0.5}'),
        ("FITTING_QUALITY_THRESHOLDS", '{"identity": 2}'),
        ("FITTING_QUALITY_POLICY", "retry"),
        ("FITTING_QUALITY_GATE", "maybe"),
    ],
)
def test_a_bad_quality_setting_stops_the_start_with_one_line(name, value):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FITTING_", "DJANGO_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings.local", name: value})
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"configuration error: {name} must be") and result.stderr.count("\n") == 1


@pytest.mark.django_db(transaction=True)
def test_the_migration_marks_the_rows_copied_before_it(user, photo, catalogue):
    made = make_job(user, photo, catalogue["top"], status="completed", done=["top"])
    hit = make_job(user, photo, catalogue["top"], status="completed", done=["top"], cached=True)
    reused = make_job(
        user,
        photo,
        catalogue["top"],
        catalogue["bottom"],
        status="completed",
        done=["top", "bottom"],
        step_metrics={"top": {"cached": True}, "bottom": {"cached": True}},
    )
    for job in (made, hit, reused):
        for category in ("top", "bottom") if job is reused else ("top",):
            StepAttempt.objects.create(job=job, category=category, number=1, outcome="accepted", candidate_rank=0)
    executor = MigrationExecutor(connection)
    executor.migrate([("fitting", "0022_judge_tokens")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert StepAttempt.objects.filter(job=made, shared=False).count() == 1
    assert StepAttempt.objects.filter(job=hit, shared=True).count() == 1
    assert StepAttempt.objects.filter(job=reused, shared=True).count() == 2
