"""GET /metrics: names and values after a known set of jobs, and its bearer token."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from fitting.models import MetricCounter, Status
from fitting.services.lifecycle import fitting_cancel, fitting_sweep_expired
from fitting.services.progress import JobSuperseded, fitting_fail
from fitting.services.start import fitting_enqueue
from tests.factories import make_job, run_now, start_job
from tests.fakegemini import fail, ok

TOKEN = "s3cret-metrics-token"


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.FITTING_PRICES = {settings.GEMINI_IMAGE_MODEL: {"input": 1, "output": 10}}
    return settings


def scrape(client) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}}."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_figures_after_known_jobs(fake_gemini, metrics_on, client, user, photo, catalogue):
    top, bottom = catalogue["top"], catalogue["bottom"]
    assert run_now(start_job(user, photo, top)).status == "completed"
    usage = {"promptTokenCount": 1000, "candidatesTokenCount": 1290, "totalTokenCount": 2290}
    fake_gemini.script_image(ok(usage=usage))
    assert run_now(start_job(user, photo, top, bottom)).status == "completed"  # top: usage above, bottom: default
    fake_gemini.script_image(ok(), fail(400, "bad garment"))
    assert run_now(start_job(user, photo, top, bottom)).error_code == "ENGINE_REJECTED"
    make_job(user, photo, top, status=Status.PROCESSING, deadline_at=timezone.now() - timedelta(hours=1))
    assert fitting_sweep_expired() == 1
    metrics_on.FITTING_RESULT_CACHE = True
    assert start_job(user, photo, top).cached  # completed at once from the first job

    m = scrape(client)
    jobs = m["fitting_jobs_total"]
    assert jobs == {
        (("engine", "gemini"), ("status", "completed")): 3,
        (("engine", "gemini"), ("status", "failed")): 1,
        (("engine", "gemini"), ("status", "timeout")): 1,
    }
    assert m["fitting_result_cache_hits_total"] == {(("engine", "gemini"),): 1}
    assert m["fitting_engine_outcomes_total"] == {
        (("code", "OK"), ("engine", "gemini")): 4,
        (("code", "ENGINE_REJECTED"), ("engine", "gemini")): 1,
        (("code", "TIMEOUT"), ("engine", "gemini")): 1,
    }
    model = metrics_on.GEMINI_IMAGE_MODEL
    # Five calls: 1 + 2 + 2 (the refused one too); the swept job and the cache hit made none.
    assert m["fitting_engine_calls_total"] == {(("engine", "gemini"), ("model", model)): 5}
    # Four images: three with the fake's default usage (1290 in, 1290 out), one with 1000 in, 1290 out.
    assert m["fitting_tokens_total"] == {
        (("kind", "input"), ("model", model)): 3 * 1290 + 1000,
        (("kind", "output"), ("model", model)): 4 * 1290,
    }
    assert m["fitting_cost_usd_total"][(("model", model),)] == pytest.approx((4870 * 1 + 5160 * 10) / 1e6)
    counts = m["fitting_step_latency_seconds_count"]
    assert counts == {(("category", "top"),): 3, (("category", "bottom"),): 1}
    buckets = m["fitting_step_latency_seconds_bucket"]
    top_buckets = sorted(v for k, v in buckets.items() if ("category", "top") in k)
    assert top_buckets[-1] == 3 and len(top_buckets) == 11  # cumulative, ten bounds and +Inf
    assert m["fitting_step_latency_seconds_sum"][(("category", "top"),)] > 0
    assert m.get("fitting_jobs_in_progress", {}) == {}
    assert m["fitting_queue_oldest_age_seconds"] == {(): 0}


def test_reused_steps_are_counted_and_cost_nothing(fake_gemini, metrics_on, client, user, photo, catalogue):
    metrics_on.FITTING_STEP_CACHE = True
    run_now(start_job(user, photo, catalogue["top"]))
    run_now(start_job(user, photo, catalogue["top"], catalogue["outer"]))
    m = scrape(client)
    assert m["fitting_steps_reused_total"] == {(("category", "top"),): 1}
    assert m["fitting_tokens_total"][(("kind", "output"), ("model", metrics_on.GEMINI_IMAGE_MODEL))] == 2 * 1290


def test_queue_figures(metrics_on, client, user, photo, catalogue):
    queued = make_job(
        user, photo, catalogue["top"], status=Status.PROCESSING, enqueued_at=timezone.now() - timedelta(seconds=90)
    )
    fitting_enqueue(job_id=str(queued.id), attempt=queued.attempt)
    m = scrape(client)
    assert m["fitting_queue_depth"] == {(): 1}
    assert 90 <= m["fitting_queue_oldest_age_seconds"][()] < 200
    assert m["fitting_jobs_in_progress"] == {(("engine", queued.engine),): 1}


def test_a_superseded_write_counts_nothing(metrics_on, user, photo, catalogue):
    job = make_job(user, photo, catalogue["top"], status=Status.PROCESSING)
    job.attempt += 1  # another attempt took the job meanwhile
    with pytest.raises(JobSuperseded):
        fitting_fail(job=job, step="top", code="ENGINE_ERROR", message="late")
    assert not MetricCounter.objects.exists()


def test_not_found_without_a_token_configured(settings, client):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_the_bearer_token_is_required(metrics_on, client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "NOT_AUTHENTICATED"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_cancel_counts_once(metrics_on, client, user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    fitting_cancel(job=job)
    fitting_cancel(job=job)  # canceled again: answered as is, not counted twice
    assert scrape(client)["fitting_jobs_total"] == {(("engine", job.engine), ("status", "canceled")): 1}
