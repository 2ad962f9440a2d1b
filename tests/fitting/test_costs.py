"""Estimated cost: per job from its tokens and FITTING_PRICES, and per day and per user in the admin."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient

from fitting import costs
from fitting.engines import catalog
from fitting.models import FittingResult, Status, UsageDay
from fitting.services.lifecycle import fitting_cancel
from tests.factories import make_job, make_photo, make_user, run_now, start_job

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


def usage(user, days_ago: int = 0, **counts) -> UsageDay:
    """A row of the usage ledger as the services leave it."""
    return UsageDay.objects.create(user=user, day=timezone.localdate() - timedelta(days=days_ago), **counts)


ONE_IMAGE = {"jobs_started": 1, "engine_jobs": 1, "engine_calls": 1, "input_tokens": 1000, "output_tokens": 1290}


def test_cost_per_day_and_per_user(user, other_user):
    usage(user, **ONE_IMAGE, cost=Decimal("0.039"))
    usage(user, days_ago=1, **ONE_IMAGE, cost=Decimal("0.039"))
    usage(other_user, cached_jobs=1)  # a cache hit: free
    by_day = costs.cost_by_day(days=7)
    assert [(r.key, r.jobs, r.engine_jobs, r.engine_calls, r.cost) for r in by_day] == [
        (timezone.localdate(), 2, 1, 1, Decimal("0.0390")),
        (timezone.localdate() - timedelta(days=1), 1, 1, 1, Decimal("0.0390")),
    ]
    by_user = costs.cost_by_user(days=7)
    assert [(r.key, r.jobs, r.cost) for r in by_user] == [(user.pk, 2, Decimal("0.0780")), (other_user.pk, 1, 0)]
    assert [r.key for r in costs.cost_by_day(days=1)] == [timezone.localdate()]


def test_a_model_without_a_price_makes_the_days_cost_unknown(user, other_user):
    usage(user, **ONE_IMAGE, cost=None)
    usage(other_user, **ONE_IMAGE, cost=Decimal("0.039"))
    assert [r.cost for r in costs.cost_by_day(days=1)] == [None]
    assert {r.key: r.cost for r in costs.cost_by_user(days=1)} == {user.pk: None, other_user.pk: Decimal("0.039")}


def test_usage_add_makes_todays_row_then_adds_to_it_in_one_query(user, other_user, django_assert_num_queries):
    usage(user, days_ago=1, jobs_started=5)
    costs.usage_add(user_id=user.pk, jobs_started=1)  # the day's first call makes the row
    with django_assert_num_queries(1):  # then one UPDATE: a POST and every step write here
        costs.usage_add(user_id=user.pk, jobs_started=1, engine_calls=2)
    costs.usage_add(user_id=user.pk, model=IMAGE_MODEL, input_tokens=1000, output_tokens=1290)
    today = UsageDay.objects.get(user=user, day=timezone.localdate())
    assert (today.jobs_started, today.engine_calls, today.input_tokens, today.output_tokens) == (2, 2, 1000, 1290)
    assert today.cost == costs.tokens_cost(IMAGE_MODEL, 1000, 1290)
    assert UsageDay.objects.get(user=user, day=timezone.localdate() - timedelta(days=1)).jobs_started == 5
    assert not UsageDay.objects.filter(user=other_user).exists()


def test_the_ledger_records_what_a_job_used(fake_gemini, user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    day = UsageDay.objects.get(user=user, day=timezone.localdate())
    assert (day.jobs_started, day.cached_jobs, day.engine_jobs, day.engine_calls) == (1, 0, 1, 2)
    assert (day.input_tokens, day.output_tokens) == (job.input_tokens, job.output_tokens) == (2580, 2580)
    assert day.cost == costs.job_cost(job)


def test_a_job_canceled_before_it_ran_did_not_call_the_engine(admin_client, user, photo, catalogue):
    """Issue 25, 12(f): it is a job started (the quota counts it), not one that called the engine."""
    job = start_job(user, photo, catalogue["top"])
    fitting_cancel(job=job)
    job = run_now(job)  # the worker's delivery comes after the cancel: it does not claim it
    assert job.status == Status.CANCELED
    [today] = costs.cost_by_day(days=1)
    assert (today.jobs, today.engine_jobs, today.engine_calls, today.input_tokens) == (1, 0, 0, 0)
    page = admin_client.get("/admin/fitting/fittingresult/costs/?days=1", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "<td>1</td><td>0</td><td>0</td><td>0</td><td>0</td><td>$0.0000</td>" in page


def test_costs_stay_when_jobs_and_the_account_are_deleted(fake_gemini, admin_client, user, photo, catalogue):
    """Issue 25, item 1: the cost pages read the ledger, which deletions leave as it is (the account anonymised)."""
    client = APIClient()
    client.force_authenticate(user)
    jobs = [run_now(start_job(user, photo, catalogue["top"])) for _ in range(2)]
    expected = sum(costs.job_cost(job) for job in jobs)
    before = costs.cost_by_day(days=1)
    assert before[0].cost == expected and before[0].jobs == 2
    page = admin_client.get("/admin/fitting/fittingresult/costs/?days=1", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert costs.format_cost(expected) in page

    assert client.delete(f"/api/virtual-fitting/{jobs[0].id}").status_code == 204
    assert costs.cost_by_day(days=1) == before
    assert client.delete("/api/users/me").status_code == 204
    assert not FittingResult.objects.exists()
    assert costs.cost_by_day(days=1) == before
    [anonymised] = costs.cost_by_user(days=1)
    assert (anonymised.key, anonymised.jobs, anonymised.cost) == (None, 2, expected)
    page = admin_client.get("/admin/fitting/fittingresult/costs/?days=1", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert costs.format_cost(expected) in page and "erased accounts" in page
    assert "alice" not in page
    dashboard = admin_client.get("/admin/dashboard/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert f"${expected:.2f}" in dashboard


def test_admin_shows_the_cost(admin_client, user, photo, catalogue):
    job = gemini_job(user, photo, catalogue["top"], input_tokens=1000, output_tokens=1290)
    usage(user, **ONE_IMAGE, cost=Decimal("0.039"))
    carol = make_user("carol")
    usage(carol, **{**ONE_IMAGE, "input_tokens": 2000, "output_tokens": 2580}, cost=Decimal("0.078"))
    assert "$0.0390" in admin_client.get("/admin/fitting/fittingresult/").content.decode()
    assert "$0.0390" in admin_client.get(f"/admin/fitting/fittingresult/{job.pk}/change/").content.decode()
    page = admin_client.get("/admin/fitting/fittingresult/costs/?days=7").content.decode()
    assert "$0.1170" in page  # today: both users
    assert "carol" in page and "$0.0780" in page and "alice" in page


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_ledger_from_the_existing_jobs(user, other_user, photo, catalogue):
    engine_made = {"top": {"latency_ms": 900, "prompt_tokens": 1000, "candidates_tokens": 1290}}
    gemini_job(user, photo, catalogue["top"], input_tokens=1000, output_tokens=1290, step_metrics=engine_made)
    gemini_job(user, photo, catalogue["top"], cached=True)
    make_job(user, photo, catalogue["top"], status=Status.CANCELED, started_at=None)  # canceled before it ran
    gemini_job(other_user, make_photo(other_user), catalogue["top"], created_at=timezone.now() - timedelta(days=1))
    executor = MigrationExecutor(connection)
    executor.migrate([("fitting", "0016_model_unavailable_code")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    rows = UsageDay.objects.order_by("day").values_list(
        "user_id", "day", "jobs_started", "cached_jobs", "engine_jobs", "engine_calls", "input_tokens", "cost"
    )
    assert list(rows) == [
        (other_user.pk, timezone.localdate() - timedelta(days=1), 1, 0, 0, 0, 0, Decimal(0)),
        (user.pk, timezone.localdate(), 2, 1, 1, 1, 1000, Decimal("0.039")),
    ]
