"""Odd input is a 4xx with a stable code, and every uncaught error on an API path answers the
JSON error shape {"error": {"code", "message", "field"}}; HTML pages keep Django's pages."""

from __future__ import annotations

import contextlib

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection
from django.test import AsyncClient, Client, RequestFactory
from rest_framework.test import APIClient

from core.exceptions import permission_denied
from fitting.models import FittingResult
from tests import helpers
from tests.e2e import free_port
from tests.factories import image_bytes, make_photo, make_token, start_job
from users.models import UserImage

# One more than Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (1000).
MANY_FIELDS = {f"f{n}": "1" for n in range(1001)}
MANY_PARAMS = "&".join(f"a={n}" for n in range(1001))


def assert_error(response, status: int, code: str) -> dict:
    error = helpers.assert_error(response, status, code)
    assert "Traceback" not in error["message"] and "Error" not in error["message"]
    return error


@contextlib.contextmanager
def database_down():
    """Every query on this thread's connection fails, as when the server goes away."""

    def fail(execute, sql, params, many, context):
        raise OperationalError("server closed the connection unexpectedly")

    with connection.execute_wrapper(fail):
        yield


# --- more than 1000 fields or parameters ------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/items", "/api/virtual-fitting"])
def test_over_1000_query_parameters_are_a_400(api, path):
    error = assert_error(api.get(f"{path}?{MANY_PARAMS}"), 400, "VALIDATION_ERROR")
    assert error["field"] is None


def test_an_upload_with_over_1000_form_fields_is_a_400(api, media_root):
    image = SimpleUploadedFile("me.png", image_bytes(fmt="PNG"), content_type="image/png")
    response = api.post("/api/users/me/photos", {"image": image, **MANY_FIELDS}, format="multipart")
    assert_error(response, 400, "VALIDATION_ERROR")
    assert not list(media_root.glob("photos/*"))


def test_a_form_with_over_1000_fields_is_a_400(api):
    response = api.post("/api/virtual-fitting", MANY_PARAMS, content_type="application/x-www-form-urlencoded")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_a_token_request_with_over_1000_fields_is_a_400(db):
    response = APIClient().post("/api/auth/token", MANY_PARAMS, content_type="application/x-www-form-urlencoded")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_over_1000_fields_read_by_a_middleware_on_an_api_path_is_a_json_400(db):
    # The CSRF middleware reads the form of a write to a plain view (media): Django's handler400.
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "a" * 32
    response = client.post("/media/items/nowhere.png", MANY_FIELDS)
    assert_error(response, 400, "VALIDATION_ERROR")


def test_html_pages_keep_djangos_own_400(db):
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "a" * 32
    response = client.post("/login/", MANY_FIELDS)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_a_csrf_failure_on_an_api_path_is_json_and_on_a_page_html(db):
    client = Client(enforce_csrf_checks=True)
    assert_error(client.post("/media/items/nowhere.png", {"a": "1"}), 403, "PERMISSION_DENIED")
    page = client.post("/login/", {"username": "x", "password": "y"})
    assert page.status_code == 403
    assert page["Content-Type"].startswith("text/html")


# --- a body that is not JSON: a plain message, never the parser's internals ----------------------
NOT_JSON = {
    "a number of 5000 digits": ("application/json", b'{"userPhotoUrl": ' + b"1" * 5000 + b"}"),
    "bytes that are not UTF-8": ("application/json", b'\xff\xfe{"items": []}'),
    "NaN": ("application/json", b'{"items": NaN}'),
    "UTF-16 without its BOM": ("application/json; charset=utf-16", b'{"items": []}'),
    "a byte outside the declared charset": ("application/json; charset=punycode", b'\xff{"items": []}'),
}
INTERNALS = ("sys.", "set_int_max_str_digits", "codec", "utf-8", "utf-16", "ascii", "BOM", "NaN", "position", "char ")


@pytest.mark.parametrize("content_type, body", list(NOT_JSON.values()), ids=list(NOT_JSON))
def test_a_body_that_is_not_json_gets_a_plain_message(api, content_type, body):
    response = api.post("/api/virtual-fitting", body, content_type=content_type, HTTP_ACCEPT_LANGUAGE="en")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["message"] == "The request body is not valid JSON."
    assert error["field"] is None
    assert not [word for word in INTERNALS if word in response.content.decode()], error["message"]


def test_a_json_syntax_error_says_where_and_no_more(api):
    response = api.post(
        "/api/virtual-fitting",
        b'{"items": [\n  {"itemId": 1,}]}',
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["message"] == "The request body is not valid JSON (line 2, column 16)."


def test_the_plain_message_is_translated(api):
    response = api.post("/api/virtual-fitting", b"\xff", content_type="application/json", HTTP_ACCEPT_LANGUAGE="ko")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["message"] != "The request body is not valid JSON."
    assert "JSON" in error["message"]


def test_an_unsupported_charset_still_names_the_clients_charset(api):
    response = api.post("/api/virtual-fitting", b"{}", content_type="application/json; charset=rot13")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "rot13" in error["message"]


# --- Django's own error handlers on API paths ------------------------------------------------
def test_a_missing_media_file_is_a_json_404(api):
    assert_error(api.get("/media/photos/nope.jpg"), 404, "NOT_FOUND")


def test_a_database_failure_while_serving_media_is_a_json_503_without_details(user):
    photo = make_photo(user)
    token = make_token(user)
    client = APIClient(raise_request_exception=False)
    with database_down():
        response = client.get(photo.image.url, HTTP_AUTHORIZATION=f"Token {token}")
    error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response["Retry-After"] == "5"
    assert "server closed" not in response.content.decode()
    assert error["message"]


@pytest.mark.parametrize("path", ["/api/items", "/api/virtual-fitting", "/api/users/me/photos"])
def test_an_api_request_while_the_database_is_down_is_a_503_to_retry(user, path):
    token = make_token(user)
    client = APIClient(raise_request_exception=False)
    with database_down():
        response = client.get(path, HTTP_AUTHORIZATION=f"Token {token}")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response["Retry-After"] == "5"
    assert "server closed" not in response.content.decode()


@pytest.fixture
def redis_down(settings):
    """The cache (and so the request rates) on Redis at a port nothing listens on."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = url
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.mark.parametrize("path", ["/api/virtual-fitting", "/api/users/me/photos"])
def test_starting_a_job_or_uploading_while_redis_is_down_is_a_503_to_retry(redis_down, user, catalogue, path):
    token = make_token(user)
    client = APIClient(raise_request_exception=False)
    if path == "/api/virtual-fitting":
        photo = make_photo(user)
        body = {"userPhotoUrl": photo.image.url, "items": [{"itemId": catalogue["top"].id, "category": "top"}]}
        response = client.post(path, body, format="json", HTTP_AUTHORIZATION=f"Token {token}")
    else:
        image = SimpleUploadedFile("me.jpg", image_bytes(fmt="JPEG"), content_type="image/jpeg")
        response = client.post(path, {"image": image}, format="multipart", HTTP_AUTHORIZATION=f"Token {token}")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response["Retry-After"] == "5"
    assert "6379" not in response.content.decode() and "refused" not in response.content.decode()
    assert not FittingResult.objects.exists() and UserImage.objects.filter(owner=user).count() == (
        1 if path == "/api/virtual-fitting" else 0
    )


def test_an_anonymous_thumbnail_while_redis_is_down_is_a_503_to_retry(redis_down, catalogue):
    # Anonymous thumbnails count their rate in the cache (THUMBNAIL_ANON_RATE), like /media/ a JSON path.
    response = Client(raise_request_exception=False).get(f"/thumbs/{catalogue['top'].image.name}")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert response["Retry-After"] == "5"


def test_a_thumbnail_while_the_database_is_down_is_a_503_to_retry(user):
    photo = make_photo(user)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    with database_down():
        response = client.get(f"/thumbs/{photo.image.name}")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")


def test_a_500_on_an_html_page_stays_djangos_page(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    with database_down():
        response = client.get("/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


def test_permission_denied_on_an_api_path_is_json_and_on_a_page_html():
    factory = RequestFactory()
    assert_error(permission_denied(factory.get("/api/virtual-fitting"), PermissionDenied()), 403, "PERMISSION_DENIED")
    page = permission_denied(factory.get("/admin/"), PermissionDenied())
    assert page.status_code == 403
    assert page["Content-Type"].startswith("text/html")


@pytest.mark.django_db(transaction=True)
def test_the_event_stream_answers_a_database_failure_before_it_starts_in_the_json_shape(user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    token = make_token(user)
    client = AsyncClient(raise_request_exception=False)
    with database_down():
        response = async_to_sync(client.get)(
            f"/api/virtual-fitting/{job.id}/events", headers={"Authorization": f"Token {token}"}
        )
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
