"""Ratings from users: PUT/DELETE /api/virtual-fitting/<jobId>/rating, in GET, the admin,
webhooks (``fitting.rated``) and erasure."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from fitting.models import FittingRating, FittingResult, Status, WebhookDelivery
from fitting.services.erasure import user_delete
from tests.factories import make_job, make_token
from tests.helpers import assert_error, body
from tests.servers import recording_server

URL = "/api/virtual-fitting"


def rating_url(job) -> str:
    return f"{URL}/{job.id}/rating"


def put(api, job, data):
    return api.put(rating_url(job), data, format="json")


@pytest.fixture
def completed(user, photo, catalogue):
    return make_job(user, photo, catalogue["top"], status=Status.COMPLETED, done=["top", "final"])


# --- the API --------------------------------------------------------------------------------
def test_the_owner_rates_a_completed_job_and_get_shows_it(api, completed):
    assert api.get(f"{URL}/{completed.id}").json()["rating"] is None
    response = put(api, completed, {"score": 2, "reasons": ["fit", "face_changed", "fit"], "comment": " 팔이 짧아요 "})
    assert response.status_code == 200, response.content
    rating = response.json()
    assert {k: rating[k] for k in ("score", "reasons", "comment")} == {
        "score": 2,
        "reasons": ["face_changed", "fit"],  # once each, in the fixed list's order
        "comment": "팔이 짧아요",
    }
    assert set(rating) == {"score", "reasons", "comment", "createdAt", "updatedAt"}
    assert api.get(f"{URL}/{completed.id}").json()["rating"] == rating
    assert [job["rating"] for job in api.get(URL).json()["results"]] == [rating]


def test_a_second_put_replaces_the_rating_and_delete_removes_it(api, completed):
    assert put(api, completed, {"score": 1, "reasons": ["artifacts"], "comment": "blurry"}).status_code == 200
    response = put(api, completed, {"score": 5})
    assert response.status_code == 200
    assert (response.json()["reasons"], response.json()["comment"]) == ([], "")
    assert FittingRating.objects.get().score == 5  # one per job
    assert api.delete(rating_url(completed)).status_code == 204
    assert not FittingRating.objects.exists()
    assert api.get(f"{URL}/{completed.id}").json()["rating"] is None
    assert api.delete(rating_url(completed)).status_code == 204  # none left: still 204


def test_another_users_job_is_404(completed, other_user):
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Token {make_token(other_user)}")
    assert_error(put(stranger, completed, {"score": 5}), 404, "NOT_FOUND")
    assert_error(stranger.delete(rating_url(completed)), 404, "NOT_FOUND")
    assert not FittingRating.objects.exists()


def test_anonymous_is_401(completed):
    assert APIClient().put(rating_url(completed), {"score": 5}, format="json").status_code == 401


@pytest.mark.parametrize("status", [Status.PROCESSING, Status.FAILED, Status.TIMEOUT, Status.CANCELED])
def test_only_a_completed_job_can_be_rated(api, user, photo, catalogue, status):
    job = make_job(user, photo, catalogue["top"], status=status)
    response = api.put(rating_url(job), {"score": 4}, format="json", HTTP_ACCEPT_LANGUAGE="en")
    assert assert_error(response, 409, "JOB_NOT_COMPLETED", None)["message"] == "Only a completed job can be rated."
    korean = api.put(rating_url(job), {"score": 4}, format="json", HTTP_ACCEPT_LANGUAGE="ko")
    assert assert_error(korean, 409, "JOB_NOT_COMPLETED")["message"] == "완료된 피팅만 평가할 수 있어요."
    assert not FittingRating.objects.exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "score"),
        ({"score": 0}, "score"),
        ({"score": 6}, "score"),
        ({"score": "five"}, "score"),
        ({"score": 3, "reasons": ["ugly"]}, "reasons"),
        ({"score": 3, "reasons": "fit"}, "reasons"),
        ({"score": 3, "comment": "가" * 501}, "comment"),
    ],
)
def test_invalid_ratings_are_validation_errors_with_the_field(api, completed, data, field):
    error = assert_error(put(api, completed, data), 400, "VALIDATION_ERROR")
    assert error["field"].split("[")[0].split(".")[0] == field
    assert not FittingRating.objects.exists()


def test_a_comment_of_500_characters_is_accepted(api, completed):
    assert put(api, completed, {"score": 3, "comment": "가" * 500}).status_code == 200


# --- erasure --------------------------------------------------------------------------------
def test_the_rating_goes_with_the_job_and_with_the_account(api, user, photo, catalogue, completed):
    assert put(api, completed, {"score": 4}).status_code == 200
    assert api.delete(f"{URL}/{completed.id}").status_code == 204
    assert not FittingRating.objects.exists()

    other = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, done=["top", "final"])
    assert put(api, other, {"score": 1, "comment": "personal words"}).status_code == 200
    user_delete(user=user)
    assert not FittingRating.objects.exists()
    assert not FittingResult.objects.exists()


# --- webhooks -------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_fitting_rated_is_delivered_only_when_subscribed(api, user, photo, catalogue):
    from tests.fitting.test_webhooks import run_queue

    with recording_server() as receiver:
        events = ["fitting.completed", "fitting.rated"]
        subscribed = api.post(
            URL, body(photo, catalogue["top"], webhookUrl=receiver.base, webhookEvents=events), format="json"
        ).json()["jobId"]
        default = api.post(URL, body(photo, catalogue["bottom"], webhookUrl=receiver.base), format="json").json()
        run_queue()
        for job_id in (subscribed, default["jobId"]):
            assert (
                api.put(f"{URL}/{job_id}/rating", {"score": 4, "reasons": ["colour"]}, format="json").status_code == 200
            )
        assert api.delete(f"{URL}/{subscribed}/rating").status_code == 204
        run_queue()
    assert api.get(f"{URL}/{default['jobId']}").json()["webhookEvents"] == [
        "fitting.completed",
        "fitting.failed",
        "fitting.timeout",
        "fitting.canceled",
    ]
    received = [json.loads(r.body) for r in receiver.received]
    rated = [(p["data"]["jobId"], p["data"]["rating"]) for p in received if p["type"] == "fitting.rated"]
    assert [job_id for job_id, _ in rated] == [subscribed, subscribed]  # the rating, then its removal
    assert rated[0][1]["score"] == 4 and rated[0][1]["reasons"] == ["colour"]
    assert rated[1][1] is None
    assert WebhookDelivery.objects.filter(event="fitting.rated").count() == 2


# --- the admin ------------------------------------------------------------------------------
def test_staff_filter_by_score_and_see_the_rating_on_the_job_page(api, staff_client, user, photo, catalogue):
    good = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, done=["top", "final"])
    bad = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, done=["top", "final"])
    unrated = make_job(user, photo, catalogue["top"], status=Status.COMPLETED, done=["top", "final"])
    put(api, good, {"score": 5})
    put(api, bad, {"score": 1, "reasons": ["face_changed"], "comment": "not me"})
    changelist = reverse("admin:fitting_fittingresult_changelist")
    for value, expected in (("1", {bad.id}), ("5", {good.id}), ("none", {unrated.id})):
        response = staff_client.get(changelist, {"rating": value})
        assert response.status_code == 200
        assert {job.id for job in response.context["cl"].result_list} == expected
    page = staff_client.get(reverse("admin:fitting_fittingresult_change", args=[bad.id])).content.decode()
    assert "★☆☆☆☆" in page and "1/5" in page and "the face changed" in page and "not me" in page
