"""numSamples and seed (issue 23, items 1 and 2): candidates per step, the best goes on, the
last step's are kept; a seed sent to the engines, stored, and part of the cache keys.

Gemini answers through the fake server (``tests.fakegemini``), with ``tests.quality_modes``
answers where the quality gate must tell good candidates from bad ones.
"""

from __future__ import annotations

import logging
import threading

import pytest
from PIL import Image

from core.logcontext import ContextFilter
from fitting.engines.base import StepAbandoned, StepResult
from fitting.engines.sampling import apply_garment_samples
from fitting.errors import DeadlineExceeded, EngineRejectedError
from fitting.models import FittingResult, MetricCounter, StepAttempt, UsageDay
from fitting.selectors import fitting_with_details, prompt_comparison, quality_by_identity
from fitting.serializers import JobOutputSerializer
from fitting.services.erasure import fitting_delete
from fitting.services.reuse import result_cache_key
from tests import helpers
from tests.e2e import wait_until
from tests.factories import run_now, running_in_a_worker, start_job
from tests.fakegemini import answer_mode, fail, hold, ok
from tests.fitting.test_quality_gate import real_item, real_photo

URL = "/api/virtual-fitting"


def post(api, photo, item, **fields):
    body = helpers.body(photo, item, **{"userPhotoUrl": f"http://testserver{photo.image.url}", **fields})
    return api.post(URL, body, format="json")


def shown(job: FittingResult) -> dict:
    return JobOutputSerializer(fitting_with_details(job_id=job.id)).data


def counters() -> dict[tuple[str, str], float]:
    return {(c.name, c.labels): c.value for c in MetricCounter.objects.all()}


@pytest.fixture
def gate(settings, fake_gemini):
    settings.FITTING_QUALITY_GATE = "on"
    settings.FITTING_QUALITY_RETRIES = 1
    settings.FITTING_QUALITY_POLICY = "fail"
    settings.FITTING_QUALITY_JUDGE = "off"
    settings.FITTING_QUALITY_THRESHOLDS = {}
    return fake_gemini


# --- the request -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"numSamples": 0}, "numSamples"),
        ({"numSamples": 5}, "numSamples"),
        ({"numSamples": 2.5}, "numSamples"),
        ({"numSamples": "two"}, "numSamples"),
        ({"numSamples": True}, "numSamples"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**31}, "seed"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_an_invalid_num_samples_or_seed_is_a_400_naming_the_field(api, photo, catalogue, fields, field):
    response = post(api, photo, catalogue["top"], **fields)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["field"] == field
    assert not FittingResult.objects.exists()


def test_num_samples_over_the_cap_is_a_400(api, photo, catalogue, settings):
    settings.FITTING_MAX_SAMPLES = 2
    response = post(api, photo, catalogue["top"], numSamples=3)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["field"] == "numSamples"
    assert "2" in response.json()["error"]["message"]
    assert post(api, photo, catalogue["top"], numSamples=2).status_code == 202


def test_num_samples_and_seed_are_stored_and_shown(api, photo, catalogue):
    response = post(api, photo, catalogue["top"], numSamples=3, seed=2**31 - 1)
    assert response.status_code == 202, response.content
    job = FittingResult.objects.get(id=response.json()["jobId"])
    assert (job.num_samples, job.seed) == (3, 2**31 - 1)
    detail = api.get(f"{URL}/{job.id}").json()
    assert (detail["numSamples"], detail["seed"], detail["candidates"]) == (3, 2**31 - 1, [])
    plain = FittingResult.objects.get(id=post(api, photo, catalogue["bottom"]).json()["jobId"])
    assert (plain.num_samples, plain.seed) == (1, None)


# --- Gemini: one call per candidate ------------------------------------------------------------
def test_gemini_makes_n_calls_per_step_with_seed_plus_k_and_keeps_the_last_steps_candidates(gate, user):
    gate.script_image(
        answer_mode("good"),
        answer_mode("unchanged"),
        answer_mode("background"),  # the first step
        answer_mode("good"),
        answer_mode("good"),
        answer_mode("background"),  # the second step
    )
    photo = real_photo(user)
    top, bottom = real_item(), real_item("bottom", "bottom_blue_jeans.png")
    job = run_now(start_job(user, photo, top, bottom, num_samples=3, seed=1000))
    assert job.status == "completed", job.error_message
    calls = gate.image_requests
    assert len(calls) == 6  # 3 per step
    assert sorted(call.generation_config["seed"] for call in calls[:3]) == [1000, 1001, 1002]
    assert sorted(call.generation_config["seed"] for call in calls[3:]) == [1000, 1001, 1002]
    # The first step's best (the only good one) is what the second step started from.
    kept_top = StepAttempt.objects.get(job=job, category="top", outcome="accepted")
    assert kept_top.passed is True and kept_top.candidate_rank is None
    assert StepAttempt.objects.filter(job=job, category="top", outcome="outranked").count() == 2

    body = shown(job)
    candidates = body["candidates"]
    assert len(candidates) == 3
    assert candidates[0]["imageUrl"] == body["resultImageUrl"]
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    ranked = list(StepAttempt.objects.filter(job=job, candidate_rank__isnull=False).order_by("candidate_rank"))
    assert [row.category for row in ranked] == ["bottom"] * 3
    keys = [(row.passed, row.scores["score"]) for row in ranked]
    assert keys == sorted(keys, reverse=True) and keys[0][0] is True  # passed first, then score
    assert [c["score"] for c in candidates] == [score for _, score in keys]
    assert {row.seed for row in ranked} == {1000, 1001, 1002}
    assert all(row.image and row.image.storage.exists(row.image.name) for row in ranked)
    assert len({c["imageUrl"] for c in candidates}) == 3

    # Every call counts: the ledger's engine calls, the tokens (1290 + 1290 per call), /metrics.
    usage = UsageDay.objects.get(user=user)
    assert (usage.jobs_started, usage.engine_jobs, usage.engine_calls) == (1, 1, 6)
    assert (job.input_tokens, job.output_tokens) == (6 * 1290, 6 * 1290)
    assert (usage.input_tokens, usage.output_tokens) == (6 * 1290, 6 * 1290)
    seen = counters()
    assert seen[("fitting_step_attempts_total", '{"engine":"gemini","outcome":"accepted"}')] == 2
    assert seen[("fitting_step_attempts_total", '{"engine":"gemini","outcome":"outranked"}')] == 4
    model_tokens = ("fitting_tokens_total", f'{{"kind":"input","model":"{job.model}"}}')
    assert seen[model_tokens] == 6 * 1290


def test_the_staff_figures_count_a_round_of_candidates_as_one_attempt(gate, user):
    gate.script_image(answer_mode("good"), answer_mode("good"), answer_mode("unchanged"))
    job = run_now(start_job(user, real_photo(user), real_item(), num_samples=3))
    assert job.status == "completed" and shown(job)["steps"][0]["attempts"] == 1
    (row,) = prompt_comparison()
    assert (row.attempts, row.steps, row.checked, row.mean_attempts) == (1, 1, 3, 1.0)
    _checks, (quality,) = quality_by_identity()
    assert (quality.attempts, quality.steps) == (1, 1)
    assert quality.pass_rates["changed"] == pytest.approx(2 / 3)  # per candidate checked


def test_a_seeded_retry_uses_seeds_derived_from_the_seed(gate, user):
    gate.script_image(answer_mode("unchanged"), answer_mode("unchanged"), answer_mode("good"), answer_mode("good"))
    job = run_now(start_job(user, real_photo(user), real_item(), num_samples=2, seed=7))
    assert job.status == "completed", job.error_message
    seeds = [call.generation_config["seed"] for call in gate.image_requests]
    assert sorted(seeds[:2]) == [7, 8] and sorted(seeds[2:]) == [9, 10]  # round 2: seed + 2*1 + k
    assert UsageDay.objects.get(user=user).engine_calls == 4
    rows = StepAttempt.objects.filter(job=job)
    assert sorted((r.number, r.outcome) for r in rows) == [
        (1, "rejected"),
        (1, "rejected"),
        (2, "accepted"),
        (2, "outranked"),
    ]
    assert [c["score"] is not None for c in shown(job)["candidates"]] == [True, True]


def test_without_a_seed_gemini_gets_random_ones_and_one_candidate_by_default(fake_gemini, user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "completed", job.error_message
    (call,) = fake_gemini.image_requests
    assert isinstance(call.generation_config.get("seed"), int)
    body = shown(job)
    assert body["candidates"] == [{"imageUrl": body["resultImageUrl"], "score": None}]  # the gate is off here


def test_the_daily_quota_counts_a_job_of_four_candidates_once(api, fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_DAILY_QUOTA = 1
    assert post(api, photo, catalogue["top"], numSamples=4).status_code == 202
    assert UsageDay.objects.get(user=user).jobs_started == 1
    refused = post(api, photo, catalogue["bottom"], numSamples=4)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "QUOTA_EXCEEDED"


def test_a_candidates_retry_is_logged_with_the_jobs_context(fake_gemini, user, photo, catalogue, caplog):
    # The candidates' calls run in a thread pool: their log lines (here the retry of a 503)
    # carry the job, attempt, step and owner as the calling thread's do.
    caplog.handler.addFilter(ContextFilter())
    fake_gemini.script_image(fail(503), ok(), ok())
    with caplog.at_level(logging.INFO, logger="fitting.engines.gemini"):
        job = run_now(start_job(user, photo, catalogue["top"], num_samples=2))
    assert job.status == "completed", job.error_message
    (retry,) = [r for r in caplog.records if r.getMessage().startswith("Gemini attempt 1 failed")]
    assert (retry.job_id, retry.attempt, retry.step, retry.user_id) == (str(job.id), job.attempt, "top", user.id)


def test_a_failed_candidate_is_left_out_and_logged_and_the_others_go_on(fake_gemini, user, photo, catalogue, caplog):
    fake_gemini.script_image(ok(), fail(400, "one candidate refused"), ok())  # in the order the calls arrive
    with caplog.at_level(logging.WARNING, logger="fitting.engines.sampling"):
        job = run_now(start_job(user, photo, catalogue["top"], num_samples=3))
    assert job.status == "completed", job.error_message
    assert len(fake_gemini.image_requests) == 3
    assert len(shown(job)["candidates"]) == 2
    assert StepAttempt.objects.filter(job=job).count() == 2
    (warning,) = [r for r in caplog.records if r.name == "fitting.engines.sampling"]
    assert "one candidate refused" in warning.getMessage()
    assert UsageDay.objects.get(user=user).engine_calls == 3  # the failed call was made: it counts
    assert counters()[("fitting_engine_calls_total", f'{{"engine":"gemini","model":"{job.model}"}}')] == 3


def test_when_every_candidate_fails_the_step_fails_with_the_engines_code(fake_gemini, user, photo, catalogue):
    fake_gemini.script_image(fail(400, "refused"), fail(400, "refused"))
    job = run_now(start_job(user, photo, catalogue["top"], num_samples=2))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "top", "ENGINE_REJECTED")
    assert len(fake_gemini.image_requests) == 2
    assert job.images.count() == 0 and StepAttempt.objects.filter(job=job).count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_cancel_while_candidates_are_in_flight_stops_the_step_without_waiting_for_them(
    fake_gemini, api, user, photo, catalogue, media_root
):
    gate = threading.Event()  # the candidates' calls are held until the end of the test
    fake_gemini.script_image(hold(gate), hold(gate), ok())
    job = start_job(user, photo, catalogue["top"], catalogue["bottom"], num_samples=2)

    with running_in_a_worker(job, gate) as thread:
        wait_until(lambda: len(fake_gemini.image_requests) == 2, timeout=60, what="both candidates' calls in flight")
        assert api.post(f"{URL}/{job.id}/cancel").status_code == 202
        # The worker lets go while both calls are still held: it does not wait for their answers.
        wait_until(lambda: not thread.is_alive(), timeout=60, what="the worker to give up the step")
    job.refresh_from_db()
    assert job.status == "canceled"
    assert len(fake_gemini.image_requests) == 2  # no next step, no retry, no message
    assert fake_gemini.text_requests == []
    assert job.images.count() == 0 and StepAttempt.objects.filter(job=job).count() == 0
    wait_until(lambda: len(fake_gemini.outputs) == 2, timeout=60, what="the held calls to answer")
    assert not (media_root / "results").exists() or not any((media_root / "results").iterdir())


class HeldEngine:
    """An engine whose calls wait for ``gate``; ``fail_seeds`` answer an error instead of an image."""

    def __init__(self, gate: threading.Event, fail_seeds=()):
        self.gate, self.fail_seeds, self.seeds = gate, set(fail_seeds), []

    def apply_garment(self, *, person, garment, category, canvas_size, timeout, keep_going, seed):
        self.seeds.append(seed)
        if seed in self.fail_seeds:
            raise EngineRejectedError(f"seed {seed} refused")
        self.gate.wait(60)
        return StepResult(image=Image.new("RGB", canvas_size), usage={})


def samples_of(engine, *, timeout: float, keep_going=None):
    image = Image.new("RGB", (64, 64))
    return apply_garment_samples(
        engine,
        person=image,
        garment=image,
        category="top",
        canvas_size=(64, 64),
        timeout=timeout,
        seeds=[1, 2, 3],
        keep_going=keep_going,
    )


def test_candidates_past_the_deadline_end_the_step_as_a_timeout_without_waiting_for_them():
    gate = threading.Event()  # never set while the step runs: only the deadline can end it
    engine = HeldEngine(gate)
    try:
        with pytest.raises(DeadlineExceeded):
            samples_of(engine, timeout=0.5)
    finally:
        gate.set()
    assert sorted(engine.seeds) == [1, 2, 3]


def test_past_the_deadline_the_candidates_that_came_back_go_on():
    gate = threading.Event()
    engine = HeldEngine(gate, fail_seeds=[2])
    original = engine.apply_garment

    def apply_garment(**arguments):
        if arguments["seed"] == 1:  # seed 1 answers at once, seed 2 fails, seed 3 is held past the deadline
            return StepResult(image=Image.new("RGB", arguments["canvas_size"]), usage={})
        return original(**arguments)

    engine.apply_garment = apply_garment
    try:
        samples = samples_of(engine, timeout=0.5)
    finally:
        gate.set()
    assert [sample.index for sample in samples] == [0]  # candidate 0 (seed 1); 1 failed, 2 was late


def test_a_cancel_seen_while_waiting_abandons_the_step_and_tells_the_calls():
    gate = threading.Event()
    engine = HeldEngine(gate)
    asked = []

    def keep_going():
        asked.append(True)
        return False  # the job was canceled

    try:
        with pytest.raises(StepAbandoned):
            samples_of(engine, timeout=60, keep_going=keep_going)
    finally:
        gate.set()
    assert asked  # asked while the calls were in flight, not after they answered


# --- the other engines -------------------------------------------------------------------------
def test_the_local_engine_makes_one_candidate_whatever_is_asked(user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["top"], num_samples=4, seed=3))
    assert job.status == "completed", job.error_message
    body = shown(job)
    assert len(body["candidates"]) == 1 and body["candidates"][0]["imageUrl"] == body["resultImageUrl"]
    assert UsageDay.objects.get(user=user).engine_calls == 1


@pytest.fixture
def tryon(fake_gemini, settings, monkeypatch):
    from fitting.engines import gemini

    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    settings.FITTING_ENGINE = "vertex-tryon"
    settings.GEMINI_USE_VERTEXAI = True
    settings.GEMINI_API_VERSION = "v1beta1"
    settings.GEMINI_API_KEY = "vertex-express-key"
    settings.GOOGLE_CLOUD_PROJECT = settings.GOOGLE_CLOUD_LOCATION = ""
    gemini.reset_client()
    return fake_gemini


@pytest.mark.parametrize("watermark", [True, False])
def test_the_tryon_model_makes_the_candidates_in_one_call(tryon, settings, user, photo, catalogue, watermark):
    settings.VERTEX_TRYON_WATERMARK = watermark
    job = run_now(start_job(user, photo, catalogue["top"], num_samples=3, seed=42))
    assert job.status == "completed", job.error_message
    (call,) = [r for r in tryon.requests if r.action == "predict"]
    assert call.parameters["sampleCount"] == 3
    # Vertex AI refuses a seed with the watermark: then none is sent (the job keeps its seed).
    assert call.parameters.get("seed") == (None if watermark else 42)
    # The attempts record the seed the model got: none with the watermark (staff see no seed it never had).
    rows = StepAttempt.objects.filter(job=job)
    assert [row.seed for row in rows] == [None if watermark else 42] * 3
    assert len(shown(job)["candidates"]) == 3
    assert UsageDay.objects.get(user=user).engine_calls == 1
    assert FittingResult.objects.get(id=job.id).seed == 42


# --- caches and erasure ------------------------------------------------------------------------
def test_the_cache_key_separates_num_samples_and_seeds(user, photo, catalogue):
    def key(**options):
        return result_cache_key(
            photo=photo, items=[catalogue["top"]], engine="gemini", model="m", prompt_version="v", **options
        )

    keys = [key(), key(num_samples=4), key(seed=1), key(seed=2), key(num_samples=4, seed=1)]
    assert len(set(keys)) == len(keys)
    assert key(num_samples=1, seed=None) == key()  # the keys of jobs made before stay


def test_a_result_serves_only_requests_with_the_same_num_samples_and_seed(
    fake_gemini, settings, user, photo, catalogue
):
    settings.FITTING_RESULT_CACHE = True
    first = run_now(start_job(user, photo, catalogue["top"], num_samples=2, seed=5))
    assert first.status == "completed" and len(fake_gemini.image_requests) == 2
    for options in ({}, {"num_samples": 4, "seed": 5}, {"num_samples": 2, "seed": 6}, {"num_samples": 2}):
        assert not start_job(user, photo, catalogue["top"], **options).cached, options
    again = start_job(user, photo, catalogue["top"], num_samples=2, seed=5)
    assert again.cached and again.status == "completed"
    assert [c["imageUrl"] for c in shown(again)["candidates"]] == [c["imageUrl"] for c in shown(first)["candidates"]]
    assert len(shown(again)["candidates"]) == 2


def test_step_reuse_needs_the_same_num_samples_and_seed(fake_gemini, settings, user, photo, catalogue):
    settings.FITTING_STEP_CACHE = True
    first = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"], seed=9))
    assert first.status == "completed"
    other_seed = start_job(user, photo, catalogue["top"], catalogue["outer"], seed=10)
    assert not other_seed.images.exists()
    same_seed = start_job(user, photo, catalogue["top"], catalogue["outer"], seed=9)
    assert list(same_seed.images.values_list("step", flat=True)) == ["top"]
    more_samples = start_job(user, photo, catalogue["top"], catalogue["outer"], seed=9, num_samples=2)
    assert not more_samples.images.exists()


def test_deleting_a_job_removes_its_candidate_files(
    fake_gemini, user, photo, catalogue, django_capture_on_commit_callbacks
):
    job = run_now(start_job(user, photo, catalogue["top"], num_samples=3))
    assert job.status == "completed"
    names = [row.image.name for row in StepAttempt.objects.filter(job=job, candidate_rank__isnull=False)]
    assert len(names) == 3 and sum(name.startswith("attempts/") for name in names) == 2
    storage = StepAttempt._meta.get_field("image").storage
    assert all(storage.exists(name) for name in names)
    with django_capture_on_commit_callbacks(execute=True):
        fitting_delete(job=job)
    assert not any(storage.exists(name) for name in names)
