import json
import uuid

import pytest
from django_q.models import OrmQ
from rest_framework.test import APIClient

from fitting.models import FittingResult, FittingResultItem
from tests import helpers
from tests.factories import make_item, make_photo, make_user
from tests.helpers import assert_error

URL = "/api/virtual-fitting"


def body(photo, *items, **overrides):
    """The request with the photo's absolute URL, as the upload API answers it."""
    return helpers.body(photo, *items, **{"userPhotoUrl": f"http://testserver{photo.image.url}", **overrides})


def post(api, data, **extra):
    return api.post(URL, data, format="json", **extra)


def assert_nothing_written():
    assert FittingResult.objects.count() == 0
    assert FittingResultItem.objects.count() == 0
    assert OrmQ.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_post_accepts_and_enqueues_after_commit(api, photo, catalogue):
    response = post(api, body(photo, catalogue["outer"], catalogue["top"]))
    assert response.status_code == 202, response.content
    data = response.json()
    assert set(data) == {"jobId", "status", "createdAt"}
    assert data["status"] == "processing"
    assert response["Location"] == f"/api/virtual-fitting/{data['jobId']}"
    job = FittingResult.objects.get(id=data["jobId"])
    # Stored in the fixed step order whatever the request's order.
    assert [(i.category, i.order) for i in job.items.all()] == [("top", 1), ("outer", 2)]
    queued = OrmQ.objects.get()
    assert queued.task["func"] == "fitting.tasks.run_fitting"
    assert queued.task["args"] == (data["jobId"], 1)


def test_enqueue_waits_for_commit(api, photo, catalogue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(api, body(photo, catalogue["top"]))
    assert response.status_code == 202
    assert OrmQ.objects.count() == 0  # nothing queued before the transaction commits
    assert len(callbacks) == 1
    callbacks[0]()
    assert OrmQ.objects.count() == 1


def test_relative_photo_url_is_accepted(api, photo, catalogue):
    assert post(api, body(photo, catalogue["top"], userPhotoUrl=photo.image.url)).status_code == 202


@pytest.mark.parametrize(
    ("make_body", "code", "field"),
    [
        (lambda p, c: {"items": [{"itemId": c["top"].id, "category": "top"}]}, "PHOTO_REQUIRED", "userPhotoUrl"),
        (
            lambda p, c: body(p, c["top"], userPhotoUrl="http://testserver/media/photos/nope.jpg"),
            "PHOTO_REQUIRED",
            "userPhotoUrl",
        ),
        (lambda p, c: body(p, c["top"], userPhotoUrl=""), "PHOTO_REQUIRED", "userPhotoUrl"),
        (lambda p, c: body(p), "INSUFFICIENT_ITEMS", "items"),
        (lambda p, c: {"userPhotoUrl": p.image.url}, "INSUFFICIENT_ITEMS", "items"),
        (lambda p, c: body(p, c["top"], c["bottom"], c["outer"], make_item("top")), "TOO_MANY_ITEMS", "items"),
        (lambda p, c: body(p, c["top"], make_item("top")), "DUPLICATE_CATEGORY", "items[1].category"),
        (
            lambda p, c: {"userPhotoUrl": p.image.url, "items": [{"itemId": c["top"].id, "category": "hat"}]},
            "INVALID_CATEGORY",
            "items[0].category",
        ),
        (
            lambda p, c: {"userPhotoUrl": p.image.url, "items": [{"itemId": c["top"].id, "category": "bottom"}]},
            "INVALID_CATEGORY",
            "items[0].category",
        ),
        (
            lambda p, c: {"userPhotoUrl": p.image.url, "items": [{"itemId": 999999, "category": "top"}]},
            "INVALID_ITEM_ID",
            "items[0].itemId",
        ),
        (lambda p, c: body(p, make_item("top", active=False)), "INVALID_ITEM_ID", "items[0].itemId"),
        (
            lambda p, c: {
                "userPhotoUrl": p.image.url,
                "items": [{"itemId": c["top"].id, "category": "top", "imageUrl": c["bottom"].image.url}],
            },
            "INVALID_ITEM_ID",
            "items[0].imageUrl",
        ),
    ],
)
def test_each_validation_code(api, photo, catalogue, make_body, code, field):
    assert_error(post(api, make_body(photo, catalogue)), 400, code, field)
    assert_nothing_written()


def test_validation_codes_come_in_the_seeds_order(api, photo, catalogue, other_user):
    """Each request breaks every rule from one point on; the first broken rule answers."""
    others_photo = make_photo(other_user)
    dup = make_item("top")
    everything_wrong = {
        "userPhotoUrl": others_photo.image.url,
        "items": [{"itemId": 999999, "category": "hat"}] * 4,
    }
    assert_error(post(api, everything_wrong), 400, "PHOTO_REQUIRED")
    assert_error(
        post(api, {**everything_wrong, "userPhotoUrl": photo.image.url, "items": []}), 400, "INSUFFICIENT_ITEMS"
    )
    assert_error(post(api, {**everything_wrong, "userPhotoUrl": photo.image.url}), 400, "TOO_MANY_ITEMS")
    two_hats = {"userPhotoUrl": photo.image.url, "items": [{"itemId": 999999, "category": "hat"}] * 2}
    assert_error(post(api, two_hats), 400, "DUPLICATE_CATEGORY")
    hat_and_missing = {
        "userPhotoUrl": photo.image.url,
        "items": [{"itemId": 999999, "category": "top"}, {"itemId": dup.id, "category": "hat"}],
    }
    assert_error(post(api, hat_and_missing), 400, "INVALID_CATEGORY")
    missing = {"userPhotoUrl": photo.image.url, "items": [{"itemId": 999999, "category": "top"}]}
    assert_error(post(api, missing), 400, "INVALID_ITEM_ID")
    assert_nothing_written()


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        "null",
        "123",
        '"text"',
        '{"items": "top"}',
        '{"items": [1, 2]}',
        '{"items": [{"itemId": "x", "category": "top"}]}',
        '{"items": [{"itemId": 1e400, "category": "top"}]}',
        '{"items": [{"itemId": 99999999999999999999999, "category": "top"}]}',
        '{"items": [{"category": "top"}]}',
        '{"items": [{"itemId": 1, "category": ["top"]}]}',
        '{"userPhotoUrl": {"a": 1}, "items": []}',
        '{"userPhotoUrl": "' + "x" * 5000 + '", "items": []}',
        '{"items": [' + ",".join(['{"itemId": 1, "category": "top"}'] * 100) + "]}",
        "\udcff",
        '{"a":' * 5000,
    ],
)
def test_malformed_bodies_are_validation_errors(api, photo, raw):
    response = api.generic("POST", URL, raw.encode("utf-8", "surrogatepass"), content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert_nothing_written()


def test_unsupported_content_type(api):
    response = api.generic("POST", URL, b"<xml/>", content_type="application/xml")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_anonymous_requests_are_refused():
    client = APIClient()
    for method, url in [
        ("get", URL),
        ("post", URL),
        ("get", "/api/items"),
        ("get", "/api/users/me/photos"),
        ("get", f"{URL}/{uuid.uuid4()}"),
    ]:
        assert_error(getattr(client, method)(url), 401, "NOT_AUTHENTICATED")


def test_token_auth(client, user, photo, catalogue):
    response = client.post(
        "/api/auth/token", {"username": "alice", "password": "pw-for-tests-123"}, content_type="application/json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    response = client.post(
        URL,
        json.dumps(body(photo, catalogue["top"])),
        content_type="application/json",
        headers={"Authorization": f"Token {token}"},
    )
    assert response.status_code == 202
    bad = client.post("/api/auth/token", {"username": "alice", "password": "wrong"}, content_type="application/json")
    assert_error(bad, 400, "INVALID_CREDENTIALS")


def test_session_writes_need_csrf(user, photo, catalogue):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(URL, body(photo, catalogue["top"]), format="json")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert client.get(URL).status_code == 200


def test_others_photo_is_photo_required(api, other_user, catalogue):
    assert_error(post(api, body(make_photo(other_user), catalogue["top"])), 400, "PHOTO_REQUIRED")


def test_job_detail_is_owner_only(api, photo, catalogue, other_user):
    job_id = post(api, body(photo, catalogue["top"])).json()["jobId"]
    detail = api.get(f"{URL}/{job_id}")
    assert detail.status_code == 200
    data = detail.json()
    assert data["jobId"] == job_id
    assert data["status"] == "processing"
    assert data["items"] == [{"itemId": catalogue["top"].id, "category": "top", "order": 1}]
    assert data["steps"] == [
        {
            "category": "top",
            "status": "pending",
            "imageUrl": None,
            "cached": False,
            "attempts": 0,
            "qualityPassed": None,
        }
    ]
    assert data["error"] is None and data["resultImageUrl"] is None
    intruder = APIClient()
    intruder.force_authenticate(other_user)
    assert_error(intruder.get(f"{URL}/{job_id}"), 404, "NOT_FOUND")
    assert intruder.get(URL).json()["count"] == 0
    assert_error(api.get(f"{URL}/{uuid.uuid4()}"), 404, "NOT_FOUND")
    assert_error(api.get(f"{URL}/not-a-uuid"), 404, "NOT_FOUND")
    assert_error(api.get(f"{URL}/null,null/events"), 404, "NOT_FOUND")
    assert_error(api.get("/api/nothing-here"), 404, "NOT_FOUND")


def test_list_is_paginated_newest_first(api, photo, catalogue, settings):
    ids = [post(api, body(photo, catalogue["top"])).json()["jobId"] for _ in range(25)]
    first = api.get(URL).json()
    assert first["count"] == 25
    assert [j["jobId"] for j in first["results"]] == ids[::-1][:20]
    second = api.get(first["next"]).json()
    assert [j["jobId"] for j in second["results"]] == ids[::-1][20:]


def test_list_query_count_does_not_grow(api, photo, catalogue, django_assert_max_num_queries):
    for _ in range(3):
        post(api, body(photo, catalogue["top"], catalogue["bottom"]))
    with django_assert_max_num_queries(6):
        api.get(URL)
    for _ in range(10):
        post(api, body(photo, catalogue["top"], catalogue["bottom"]))
    with django_assert_max_num_queries(6):
        api.get(URL)


def test_items_filter_by_category(api, catalogue):
    make_item("top", active=False)
    all_items = api.get("/api/items").json()
    assert {i["category"] for i in all_items} == {"top", "bottom", "outer"}
    tops = api.get("/api/items?category=top").json()
    assert [i["id"] for i in tops] == [catalogue["top"].id]
    assert set(tops[0]) == {"id", "name", "category", "imageUrl"}
    assert tops[0]["imageUrl"].startswith("http://testserver/media/items/")
    assert_error(api.get("/api/items?category=hat"), 400, "VALIDATION_ERROR", "category")


def test_health(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "queue": "ok"}


def test_health_reports_a_broken_queue(client, db, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "ORM", "missing-alias")
    monkeypatch.setattr(Conf, "REDIS", {"host": "127.0.0.1", "port": 1})
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["queue"] == "down"


def test_result_images_are_owner_only(api, photo, catalogue, user, other_user):
    from fitting.pipeline import run_job

    job_id = post(api, body(photo, catalogue["top"])).json()["jobId"]
    run_job(job_id=job_id, attempt=1)
    job = api.get(f"{URL}/{job_id}").json()
    urls = [job["resultImageUrl"], *(s["imageUrl"] for s in job["steps"])]
    owner, intruder, staff = APIClient(), APIClient(), APIClient()
    owner.force_login(user)  # media are plain Django views: a session or a token header
    intruder.force_login(other_user)
    staff.force_login(make_user("support", is_staff=True, is_superuser=True))
    for url in urls:
        path = url.replace("http://testserver", "")
        assert owner.get(path).status_code == 200
        assert owner.get(path)["Content-Type"] == "image/jpeg"
        assert intruder.get(path).status_code == 404
        assert APIClient().get(path).status_code == 404
        assert staff.get(path).status_code == 200  # the admin's thumbnails (tests/test_media.py: permissions)


def test_validation_error_names_the_nested_field(api, photo, catalogue):
    items = [{"itemId": catalogue["top"].id, "category": "top"}, {"itemId": "x", "category": "bottom"}]
    response = post(api, {"userPhotoUrl": photo.image.url, "items": items})
    assert_error(response, 400, "VALIDATION_ERROR", "items[1].itemId")
    assert_error(post(api, {"userPhotoUrl": {"a": 1}, "items": []}), 400, "VALIDATION_ERROR", "userPhotoUrl")


def test_a_crash_shows_users_a_generic_message_and_staff_the_details(api, photo, catalogue, user, monkeypatch):
    import errno

    from django.core.files.storage import FileSystemStorage

    from tests.factories import run_now

    def disk_full(self, name, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    job_id = post(api, body(photo, catalogue["top"])).json()["jobId"]
    monkeypatch.setattr(FileSystemStorage, "_save", disk_full)
    job = run_now(FittingResult.objects.get(id=job_id))
    monkeypatch.undo()
    assert (job.status, job.error_code) == ("failed", "INTERNAL_ERROR")
    assert "No space left" in job.error_message  # kept for staff

    for language in ("ko", "en"):
        shown = api.get(f"{URL}/{job_id}", HTTP_ACCEPT_LANGUAGE=language).json()["error"]
        assert shown["code"] == "INTERNAL_ERROR"
        assert "Errno" not in shown["message"] and "OSError" not in shown["message"]
        assert "space" not in shown["message"]
    assert api.get(f"{URL}/{job_id}", HTTP_ACCEPT_LANGUAGE="en").json()["error"]["message"] == "Something went wrong."

    staff = APIClient()
    staff.force_login(make_user("support", is_staff=True, is_superuser=True))
    page = staff.get(f"/admin/fitting/fittingresult/{job_id}/change/")
    assert "No space left on device" in page.content.decode()


# --- dresses and shoes (issue 23) -------------------------------------------------------------
@pytest.fixture
def one_piece(db):
    return {"dress": make_item("dress", "Linen dress", (150, 40, 60)), "shoes": make_item("shoes", "Loafers")}


@pytest.mark.parametrize("other", ["top", "bottom"])
def test_a_dress_with_a_top_or_a_bottom_is_a_category_conflict(api, photo, catalogue, one_piece, other):
    assert_error(
        post(api, body(photo, one_piece["dress"], catalogue[other])), 400, "CATEGORY_CONFLICT", "items[1].category"
    )
    assert_error(
        post(api, body(photo, catalogue[other], one_piece["dress"])), 400, "CATEGORY_CONFLICT", "items[0].category"
    )
    assert_nothing_written()


@pytest.mark.django_db(transaction=True)
def test_a_dress_with_outerwear_and_shoes_runs_in_step_order(api, photo, catalogue, one_piece):
    response = post(api, body(photo, one_piece["shoes"], catalogue["outer"], one_piece["dress"]))
    assert response.status_code == 202, response.content
    job = FittingResult.objects.get(id=response.json()["jobId"])
    assert [(i.category, i.order) for i in job.items.all()] == [("dress", 1), ("outer", 2), ("shoes", 3)]


@pytest.mark.django_db(transaction=True)
def test_the_item_limit_is_a_setting(api, photo, catalogue, one_piece, settings):
    four = body(photo, one_piece["shoes"], catalogue["outer"], catalogue["bottom"], catalogue["top"])
    error = assert_error(post(api, four), 400, "TOO_MANY_ITEMS", "items")
    assert "3" in error["message"]
    settings.FITTING_MAX_ITEMS = 4
    response = post(api, four)
    assert response.status_code == 202, response.content
    job = FittingResult.objects.get(id=response.json()["jobId"])
    assert [i.category for i in job.items.all()] == ["top", "bottom", "outer", "shoes"]
    settings.FITTING_MAX_ITEMS = 1
    error = assert_error(post(api, body(photo, catalogue["top"], catalogue["bottom"])), 400, "TOO_MANY_ITEMS")
    assert "1" in error["message"]


def test_category_conflict_comes_after_invalid_category_and_before_invalid_item_id(api, photo, one_piece):
    """In the seed's order: the categories must be known first, the items are looked up after."""
    url = photo.image.url

    def items(*pairs):
        return {"userPhotoUrl": url, "items": [{"itemId": item_id, "category": c} for item_id, c in pairs]}

    # Too many, duplicated and unknown categories all answer before the conflict.
    assert_error(post(api, items((1, "dress"), (2, "top"), (3, "outer"), (4, "shoes"))), 400, "TOO_MANY_ITEMS")
    assert_error(post(api, items((1, "dress"), (2, "top"), (3, "top"))), 400, "DUPLICATE_CATEGORY")
    assert_error(post(api, items((1, "dress"), (2, "top"), (3, "hat"))), 400, "INVALID_CATEGORY", "items[2].category")
    # The conflict answers before the (missing) items are looked up, and before their own categories.
    assert_error(post(api, items((999999, "dress"), (999998, "bottom"))), 400, "CATEGORY_CONFLICT")
    shoes_as_dress = items((one_piece["shoes"].id, "dress"), (one_piece["dress"].id, "top"))
    assert_error(post(api, shoes_as_dress), 400, "CATEGORY_CONFLICT")
    # Without the conflict, the same requests reach the later rules.
    assert_error(post(api, items((999999, "dress"), (999998, "outer"))), 400, "INVALID_ITEM_ID")
    assert_error(post(api, items((one_piece["shoes"].id, "dress"))), 400, "INVALID_CATEGORY", "items[0].category")
    assert_nothing_written()


def test_items_filter_by_dress_and_shoes(api, catalogue, one_piece):
    assert [i["id"] for i in api.get("/api/items?category=dress").json()] == [one_piece["dress"].id]
    assert [i["id"] for i in api.get("/api/items?category=shoes").json()] == [one_piece["shoes"].id]


# --- disclosure: what made the images (issue 23) ---------------------------------------------
def test_a_local_preview_is_not_labelled_ai_generated_and_names_its_engine(api, photo, catalogue):
    from fitting.pipeline import run_job

    job_id = post(api, body(photo, catalogue["top"])).json()["jobId"]
    processing = api.get(f"{URL}/{job_id}").json()
    assert processing["aiGenerated"] is False
    assert processing["engine"] == {"name": "local", "model": "local-preview-1"}
    run_job(job_id=job_id, attempt=1)
    done = api.get(f"{URL}/{job_id}").json()
    assert (done["status"], done["aiGenerated"], done["engine"]) == (
        "completed",
        False,
        {"name": "local", "model": "local-preview-1"},
    )
    assert api.get(URL).json()["results"][0]["aiGenerated"] is False


def test_a_gemini_result_is_labelled_ai_generated_with_its_model(api, photo, catalogue, fake_gemini, settings):
    from fitting.pipeline import run_job

    job_id = post(api, body(photo, catalogue["top"])).json()["jobId"]
    run_job(job_id=job_id, attempt=1)
    job = api.get(f"{URL}/{job_id}").json()
    assert job["status"] == "completed"
    assert job["aiGenerated"] is True
    assert job["engine"] == {"name": "gemini", "model": settings.GEMINI_IMAGE_MODEL}
