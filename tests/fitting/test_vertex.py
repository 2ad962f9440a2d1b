"""Vertex AI through the same google-genai client, on the wire against the fake server's Vertex paths.

Nothing calls out: express mode sends an API key; the application-default-credentials mode
reads a stand-in service account file (a key made here) whose ``token_uri`` is the fake
server. (An ``authorized_user`` file would not do: google-auth always sends those to Google's
own token endpoint.)
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command
from django.core.management.base import CommandError

from fitting.engines import gemini
from fitting.engines.gemini import nearest_aspect_ratio
from tests.factories import make_photo, run_now, start_job
from tests.fakegemini import ACCESS_TOKEN
from tests.test_deploy_check import manage

PROJECT, LOCATION = "shop-prod", "asia-northeast3"


def use_a_service_account(settings, monkeypatch, tmp_path, token_url: str) -> None:
    """Vertex AI with a project and a location, authenticated by a service account's key file
    (application default credentials) whose tokens come from ``token_url`` (the fake server)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    credentials = tmp_path / "service-account.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "stand-in",
                "private_key": pem.decode(),
                "client_email": f"fitting@{PROJECT}.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_url,
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    settings.GEMINI_API_KEY = ""
    settings.GOOGLE_CLOUD_PROJECT, settings.GOOGLE_CLOUD_LOCATION = PROJECT, LOCATION
    gemini.reset_client()


@pytest.fixture
def vertex(fake_gemini, settings, monkeypatch):
    """The fake server, and settings for Vertex AI (each test picks the authentication)."""
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)  # only the settings may choose the mode
    # Should anything look for the metadata server, it finds a closed local port, not Google.
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    settings.GEMINI_USE_VERTEXAI = True
    settings.GEMINI_API_VERSION = "v1beta1"
    settings.GOOGLE_CLOUD_PROJECT = settings.GOOGLE_CLOUD_LOCATION = ""
    gemini.reset_client()
    return fake_gemini


def run_a_job(user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert job.status == "completed", job.error_message
    assert job.llm_message
    return job


def test_express_mode_runs_a_job_through_vertex_paths_with_the_api_key(vertex, settings, user, photo, catalogue):
    settings.GEMINI_API_KEY = "vertex-express-key"
    gemini.reset_client()

    run_a_job(user, photo, catalogue)

    assert len(vertex.image_requests) == 2 and len(vertex.text_requests) == 1
    for request, model in zip(
        vertex.requests, [settings.GEMINI_IMAGE_MODEL] * 2 + [settings.GEMINI_TEXT_MODEL], strict=True
    ):
        assert request.path == f"/v1beta1/publishers/google/models/{model}:generateContent"
        assert request.headers["x-goog-api-key"] == "vertex-express-key"
        assert "authorization" not in request.headers
    assert vertex.token_requests == []


def test_project_and_location_use_application_default_credentials(
    vertex, settings, monkeypatch, tmp_path, user, photo, catalogue
):
    use_a_service_account(settings, monkeypatch, tmp_path, vertex.token_url)

    run_a_job(user, photo, catalogue)

    assert len(vertex.requests) == 3
    for request in vertex.requests:
        assert (request.version, request.project, request.location, request.publisher) == (
            "v1beta1",
            PROJECT,
            LOCATION,
            "google",
        )
        assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
        assert "x-goog-api-key" not in request.headers
    assert vertex.requests[0].path == (
        f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
        f"{settings.GEMINI_IMAGE_MODEL}:generateContent"
    )
    assert vertex.token_requests  # the service account's JWT exchanged for the access token
    assert vertex.token_requests[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_check_engine_asks_vertex_ai_with_a_project_and_location(vertex, settings, monkeypatch, tmp_path):
    use_a_service_account(settings, monkeypatch, tmp_path, vertex.token_url)
    vertex.retire(settings.GEMINI_TEXT_MODEL)
    out = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("check_engine", stdout=out)
    assert failed.value.returncode == 1 and "change GEMINI_TEXT_MODEL" in str(failed.value)
    image, text = out.getvalue().splitlines()
    assert image == f"GEMINI_IMAGE_MODEL={settings.GEMINI_IMAGE_MODEL}: served via {vertex.base_url}"
    assert text.startswith(f"GEMINI_TEXT_MODEL={settings.GEMINI_TEXT_MODEL}: NOT served (HTTP 404")
    # The SDK asks for a publisher model without the project's prefix, with the service account's token.
    assert vertex.model_gets == [
        f"/v1beta1/publishers/google/models/{settings.GEMINI_IMAGE_MODEL}",
        f"/v1beta1/publishers/google/models/{settings.GEMINI_TEXT_MODEL}",
    ]
    assert vertex.token_requests


# --- the photo's aspect ratio in image_config -------------------------------------------------
@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ((1000, 1000), "1:1"),
        ((64, 96), "2:3"),
        ((800, 1000), "4:5"),
        ((1080, 1920), "9:16"),
        ((1920, 1080), "16:9"),
        ((3000, 1000), "21:9"),
        ((1000, 760), "4:3"),
    ],
)
def test_nearest_aspect_ratio(size, ratio):
    assert nearest_aspect_ratio(size) == ratio


@pytest.mark.parametrize("use_vertex", [False, True])
def test_each_image_call_sends_the_photos_aspect_ratio(fake_gemini, settings, user, catalogue, use_vertex):
    settings.GEMINI_USE_VERTEXAI = use_vertex
    if use_vertex:
        settings.GEMINI_API_VERSION = "v1beta1"
    gemini.reset_client()
    photo = make_photo(user, size=(90, 160))  # 9:16

    run_a_job(user, photo, catalogue)

    # The default image model (a 3.x one) also gets the output resolution: a small canvas, 1K.
    expected = {"aspectRatio": "9:16", "imageSize": "1K"}
    assert [r.generation_config.get("imageConfig") for r in fake_gemini.image_requests] == [expected] * 2
    canvas = fake_gemini.image_requests[0].images[-1]
    assert canvas.size == (90, 160)  # the blank canvas still goes with it
    assert "imageConfig" not in fake_gemini.text_requests[0].generation_config


def test_a_model_without_image_config_is_not_sent_one(fake_gemini, settings, user, photo, catalogue):
    settings.GEMINI_IMAGE_MODEL = "gemini-2.0-flash-preview-image-generation"
    run_a_job(user, photo, catalogue)
    assert all("imageConfig" not in r.generation_config for r in fake_gemini.image_requests)


# --- settings: one clear line at start ----------------------------------------------------------
PRODUCTION = {
    "DJANGO_SECRET_KEY": "x" * 64,
    "DJANGO_ALLOWED_HOSTS": "h",
    "FITTING_ENGINE": "gemini",
    "SERVE_MEDIA": "true",
}


def test_vertex_without_project_location_or_key_stops_at_start_in_one_line():
    result = manage("check", GOOGLE_GENAI_USE_VERTEXAI="true", **PRODUCTION)
    assert result.returncode != 0
    assert result.stderr == (
        "configuration error: GOOGLE_GENAI_USE_VERTEXAI=true needs GOOGLE_CLOUD_PROJECT and "
        "GOOGLE_CLOUD_LOCATION (application default credentials), or GEMINI_API_KEY (Vertex AI express mode)\n"
    )


def test_vertex_with_a_project_but_no_location_stops_at_start_in_one_line():
    result = manage("check", GOOGLE_GENAI_USE_VERTEXAI="true", GOOGLE_CLOUD_PROJECT=PROJECT, **PRODUCTION)
    assert result.returncode != 0
    assert result.stderr == (
        "configuration error: GOOGLE_GENAI_USE_VERTEXAI=true needs both "
        "GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION\n"
    )


@pytest.mark.parametrize(
    "auth",
    [
        {"GOOGLE_CLOUD_PROJECT": PROJECT, "GOOGLE_CLOUD_LOCATION": LOCATION},  # no key needed
        {"GEMINI_API_KEY": "vertex-express-key"},
    ],
)
def test_vertex_starts_with_a_project_and_location_or_an_express_key(auth, tmp_path):
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.GEMINI_USE_VERTEXAI, settings.GEMINI_API_VERSION)",
        GOOGLE_GENAI_USE_VERTEXAI="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **PRODUCTION,
        **auth,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "True v1beta1"
