"""Estimated cost: per job from its tokens and FITTING_PRICES, and per day and per user in the admin."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from fitting import costs
from fitting.engines import catalog
from fitting.models import Status
from tests.factories import make_job, make_user, run_now, start_job

IMAGE_MODEL = "gemini-2.5-flash-image"


def gemini_job(owner, photo, item, **fields):
    fields = {"engine": "gemini", "model": IMAGE_MODEL, **fields}
    return make_job(owner, photo, item, status=Status.COMPLETED, **fields)


def test_an_image_costs_about_four_cents_at_the_default_prices(user, photo, catalogue):
    job = gemini_job(user, photo, catalogue["top"], input_tokens=1000, output_tokens=1290)
    assert costs.job_cost(job) == Decimal("0.0390")  # 1000 × $0.30/M + 1290 × $30/M


def test_a_model_without_a_price_has_no_cost(user, photo, catalogue):
    job = gemini_job(user, photo, catalogue["top"], model="unpriced-model", input_tokens=10, output_tokens=10)
    assert costs.job_cost(job) is None


def test_the_job_records_its_steps_tokens(fake_gemini, user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert job.model == "gemini-3.1-flash-image"  # the default image model, priced by the model table
    assert (job.input_tokens, job.output_tokens) == (2 * 1290, 2 * 1290)  # the fake's usage per image
    assert costs.job_cost(job) == (Decimal("0.50") * 2580 + Decimal(60) * 2580) / 1_000_000


def test_every_token_priced_model_of_the_table_has_a_default_price(settings):
    for model in catalog.MODELS:
        if model.input_price is not None and model.output_price is not None:
            assert costs.model_price(model.name) == costs.Price(
                input=Decimal(str(model.input_price)), output=Decimal(str(model.output_price))
            )
    assert costs.model_price("gemini-3.5-flash") == costs.Price(input=Decimal("1.5"), output=Decimal("9.0"))


def test_cost_per_day_and_per_user(user, other_user, photo, catalogue):
    yesterday = timezone.now() - timedelta(days=1)
    gemini_job(user, photo, catalogue["top"], input_tokens=1000, output_tokens=1290)
    gemini_job(user, photo, catalogue["top"], input_tokens=1000, output_tokens=1290, created_at=yesterday)
    gemini_job(other_user, photo, catalogue["top"], cached=True)  # a cache hit: free
    by_day = costs.cost_by_day(days=7)
    assert [(r.key, r.jobs, r.engine_jobs, r.cost) for r in by_day] == [
        (timezone.localdate(), 2, 1, Decimal("0.0390")),
        (timezone.localdate() - timedelta(days=1), 1, 1, Decimal("0.0390")),
    ]
    by_user = costs.cost_by_user(days=7)
    assert [(r.key, r.jobs, r.cost) for r in by_user] == [(user.pk, 2, Decimal("0.0780")), (other_user.pk, 1, 0)]
    assert [r.key for r in costs.cost_by_day(days=1)] == [timezone.localdate()]


def test_admin_shows_the_cost(admin_client, user, photo, catalogue):
    job = gemini_job(user, photo, catalogue["top"], input_tokens=1000, output_tokens=1290)
    gemini_job(make_user("carol"), photo, catalogue["top"], input_tokens=2000, output_tokens=2580)
    assert "$0.0390" in admin_client.get("/admin/fitting/fittingresult/").content.decode()
    assert "$0.0390" in admin_client.get(f"/admin/fitting/fittingresult/{job.pk}/change/").content.decode()
    page = admin_client.get("/admin/fitting/fittingresult/costs/?days=7").content.decode()
    assert "$0.1170" in page  # today: both jobs
    assert "carol" in page and "$0.0780" in page and "alice" in page
