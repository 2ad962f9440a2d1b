"""The Vertex AI Virtual Try-On engine (FITTING_ENGINE=vertex-tryon), on the wire against the fake server.

The real google-genai client sends ``recontext_image`` as Vertex AI's ``…/models/<model>:predict``;
the fake checks the request's shape and answers as Vertex AI does. Nothing calls out.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from fitting.engines import engine_identity, gemini, get_engine
from fitting.engines.identity import TRYON_VERSION, EngineIdentity
from fitting.engines.vertex_tryon import VertexTryOnEngine
from fitting.models import FittingResult, StepAttempt
from tests.factories import run_now, start_job
from tests.fakegemini import ACCESS_TOKEN, block, fail, filtered, marker_box, marker_color, text_only
from tests.fitting.test_vertex import LOCATION, PROJECT, use_a_service_account
from tests.test_deploy_check import manage

MODEL = "virtual-try-on-001"


@pytest.fixture
def tryon(fake_gemini, settings, monkeypatch):
    """The fake server, and the try-on engine on Vertex AI in express mode (an API key)."""
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)  # only the settings may choose the mode
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # should anything look for it: a closed port
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    settings.FITTING_ENGINE = "vertex-tryon"
    settings.GEMINI_USE_VERTEXAI = True
    settings.GEMINI_API_VERSION = "v1beta1"
    settings.GEMINI_API_KEY = "vertex-express-key"
    settings.GOOGLE_CLOUD_PROJECT = settings.GOOGLE_CLOUD_LOCATION = ""
    gemini.reset_client()
    return fake_gemini


def predicts(fake):
    return [r for r in fake.requests if r.action == "predict"]


def test_each_garment_is_one_predict_call_and_the_message_is_geminis(tryon, settings, user, photo, catalogue):
    job = run_now(start_job(user, photo, catalogue["bottom"], catalogue["top"]))

    assert job.status == "completed", job.error_message
    assert job.engine_identity == EngineIdentity("vertex-tryon", MODEL, TRYON_VERSION)
    assert job.llm_message
    steps = predicts(tryon)
    assert len(steps) == 2
    for request in steps:
        assert request.path == f"/v1beta1/publishers/google/models/{MODEL}:predict"
        assert request.headers["x-goog-api-key"] == "vertex-express-key"
        instance = request.body["instances"][0]
        assert set(instance) == {"personImage", "productImages"}  # no prompt: the model needs none
        assert len(instance["productImages"]) == 1  # one garment per call
        assert request.parameters == {
            "sampleCount": 1,
            "personGeneration": "ALLOW_ADULT",
            "safetySetting": "BLOCK_MEDIUM_AND_ABOVE",
            "addWatermark": True,  # SynthID stays on by default
            "outputOptions": {"mimeType": "image/png"},
        }
        assert "seed" not in request.parameters
    # In step order: the first call dresses the photo in the top, the second its output in the bottom.
    assert steps[0].person_image.size == (photo.width, photo.height)
    assert _colour_near(steps[0].product_images[0], catalogue["top"])
    assert _colour_near(steps[1].product_images[0], catalogue["bottom"])
    first_marker = np.asarray(steps[1].person_image.convert("RGB").crop(marker_box(0, steps[1].person_image.size)))
    assert np.abs(first_marker.reshape(-1, 3).mean(axis=0) - marker_color(0)).max() < 40  # step 1's output
    # The message: the Gemini text model, through the same Vertex AI client.
    (message,) = tryon.text_requests
    assert message.path == f"/v1beta1/publishers/google/models/{settings.GEMINI_TEXT_MODEL}:generateContent"
    assert message.headers["x-goog-api-key"] == "vertex-express-key"


def _colour_near(image, item) -> bool:
    """The product image sent is the item's (the factory's items: one colour, a dark square)."""
    with item.image.open("rb") as handle:
        expected = Image.open(handle).convert("RGB").getpixel((40, 40))
    sent = image.convert("RGB").getpixel((40, 40))
    return max(abs(a - b) for a, b in zip(sent, expected, strict=True)) < 12


def test_project_and_location_call_the_projects_predict_path_with_a_bearer_token(
    tryon, settings, monkeypatch, tmp_path, user, photo, catalogue
):
    use_a_service_account(settings, monkeypatch, tmp_path, tryon.token_url)

    job = run_now(start_job(user, photo, catalogue["top"]))

    assert job.status == "completed", job.error_message
    (step,) = predicts(tryon)
    assert step.path == f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{MODEL}:predict"
    assert step.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "x-goog-api-key" not in step.headers


def test_the_settings_reach_the_request(tryon, settings, user, photo, catalogue):
    settings.VERTEX_TRYON_WATERMARK = False
    settings.VERTEX_TRYON_BASE_STEPS = 48
    settings.VERTEX_TRYON_SAFETY_FILTER_LEVEL = "BLOCK_ONLY_HIGH"
    settings.VERTEX_TRYON_PERSON_GENERATION = "ALLOW_ALL"
    settings.VERTEX_TRYON_MODEL = "virtual-try-on-preview-08-04"

    job = run_now(start_job(user, photo, catalogue["top"]))

    assert job.status == "completed", job.error_message
    assert job.model == "virtual-try-on-preview-08-04"
    (step,) = predicts(tryon)
    assert step.model == "virtual-try-on-preview-08-04"
    assert step.parameters["addWatermark"] is False
    assert step.parameters["baseSteps"] == 48
    assert step.parameters["safetySetting"] == "BLOCK_ONLY_HIGH"
    assert step.parameters["personGeneration"] == "ALLOW_ALL"


# --- failures -------------------------------------------------------------------------------
def test_a_filtered_image_fails_the_step_as_engine_blocked(tryon, user, photo, catalogue):
    tryon.script_image(block("Your current safety filter threshold filtered out the generated image."))
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "top", "ENGINE_BLOCKED")
    assert "safety filter threshold" in job.error_message  # the reason, for staff
    assert len(predicts(tryon)) == 1  # a refusal is not retried


REASON = "Your current safety filter threshold filtered out the generated image."


def test_filtered_candidates_are_left_out_and_logged_when_others_came_back(tryon, user, photo, catalogue, caplog):
    tryon.script_image(filtered(2, REASON))
    with caplog.at_level(logging.WARNING, logger="fitting.engines.vertex_tryon"):
        job = run_now(start_job(user, photo, catalogue["top"], num_samples=3))
    assert job.status == "completed", job.error_message
    (call,) = predicts(tryon)
    assert call.parameters["sampleCount"] == 3
    assert StepAttempt.objects.filter(job=job).count() == 1  # the one image that came back
    (warning,) = [r for r in caplog.records if r.name == "fitting.engines.vertex_tryon"]
    assert "took 2 of 3 images" in warning.getMessage() and REASON in warning.getMessage()


def test_every_candidate_filtered_is_engine_blocked(tryon, user, photo, catalogue):
    tryon.script_image(filtered(3, REASON))
    job = run_now(start_job(user, photo, catalogue["top"], num_samples=3))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "top", "ENGINE_BLOCKED")
    assert REASON in job.error_message
    assert len(predicts(tryon)) == 1 and not StepAttempt.objects.filter(job=job).exists()


def test_an_answer_without_predictions_is_engine_no_image(tryon, user, photo, catalogue):
    tryon.script_image(text_only())
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.error_code) == ("failed", "ENGINE_NO_IMAGE")


def test_transient_errors_are_retried_within_the_deadline(tryon, user, photo, catalogue):
    tryon.script_image(fail(503), fail(429, retry_delay="0.05s"))
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "completed", job.error_message
    assert len(predicts(tryon)) == 3


def test_a_rejected_request_is_not_retried(tryon, user, photo, catalogue):
    tryon.script_image(fail(400, "Image is too small."))
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.error_code) == ("failed", "ENGINE_REJECTED")
    assert "Image is too small." in job.error_message
    assert len(predicts(tryon)) == 1


def test_a_model_not_served_names_the_setting(tryon, user, photo, catalogue):
    tryon.retire(MODEL)
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.error_code) == ("failed", "ENGINE_MODEL_UNAVAILABLE")
    assert "VERTEX_TRYON_MODEL" in job.error_message


# --- identity: jobs are pinned to it ---------------------------------------------------------
def test_the_identity_follows_the_model_setting_without_building_the_engine(settings):
    settings.VERTEX_TRYON_MODEL = "virtual-try-on-001"
    assert engine_identity("vertex-tryon") == EngineIdentity("vertex-tryon", "virtual-try-on-001", TRYON_VERSION)
    settings.VERTEX_TRYON_MODEL = "virtual-try-on-preview-08-04"
    assert engine_identity("vertex-tryon").model == "virtual-try-on-preview-08-04"
    assert engine_identity("vertex-tryon") != engine_identity("gemini")


def test_a_tryon_job_is_not_run_by_a_gemini_worker(tryon, settings, user, photo, catalogue):
    job = start_job(user, photo, catalogue["top"])
    assert job.engine == "vertex-tryon"
    settings.FITTING_ENGINE = "gemini"
    job = run_now(job)
    assert (job.status, job.error_code) == ("failed", "ENGINE_MISMATCH")
    assert tryon.requests == []


def test_the_engine_is_built_from_its_name(tryon):
    engine = get_engine("vertex-tryon")
    assert isinstance(engine, VertexTryOnEngine)
    assert engine.identity.name == "vertex-tryon"


# --- check_engine and the worker's probe -------------------------------------------------------
def test_check_engine_asks_for_the_tryon_and_the_text_model(tryon, settings):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("check_engine", stdout=out)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"VERTEX_TRYON_MODEL={MODEL}",
        f"GEMINI_TEXT_MODEL={settings.GEMINI_TEXT_MODEL}",
    ]
    assert all(line.endswith(f": served via {tryon.base_url}") for line in lines)
    assert tryon.model_gets == [
        f"/v1beta1/publishers/google/models/{MODEL}",
        f"/v1beta1/publishers/google/models/{settings.GEMINI_TEXT_MODEL}",
    ]


# --- settings: one clear line at start -----------------------------------------------------------
PRODUCTION = {
    "DJANGO_SECRET_KEY": "x" * 64,
    "DJANGO_ALLOWED_HOSTS": "h",
    "FITTING_ENGINE": "vertex-tryon",
    "SERVE_MEDIA": "true",
}


def test_the_tryon_engine_without_vertex_ai_stops_at_start_in_one_line():
    result = manage("check", GEMINI_API_KEY="a-gemini-api-key", **PRODUCTION)
    assert result.returncode != 0
    assert result.stderr == (
        "configuration error: FITTING_ENGINE=vertex-tryon runs only on Vertex AI: set GOOGLE_GENAI_USE_VERTEXAI=true "
        "with GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION, or with GEMINI_API_KEY (express mode)\n"
    )


def test_the_tryon_engine_on_vertex_ai_without_credentials_stops_at_start_in_one_line():
    result = manage("check", GOOGLE_GENAI_USE_VERTEXAI="true", **PRODUCTION)
    assert result.returncode != 0
    assert result.stderr.startswith("configuration error: GOOGLE_GENAI_USE_VERTEXAI=true needs GOOGLE_CLOUD_PROJECT")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "auth",
    [{"GOOGLE_CLOUD_PROJECT": PROJECT, "GOOGLE_CLOUD_LOCATION": LOCATION}, {"GEMINI_API_KEY": "vertex-express-key"}],
    ids=["project", "express"],
)
def test_the_tryon_engine_starts_on_vertex_ai(auth, tmp_path):
    result = manage(
        "shell",
        "-c",
        "from fitting.engines import engine_identity; print(engine_identity())",
        GOOGLE_GENAI_USE_VERTEXAI="true",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        **PRODUCTION,
        **auth,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"vertex-tryon (model {MODEL}, prompts {TRYON_VERSION})"


def test_the_job_is_labelled_ai_generated_with_the_tryon_engine(tryon, user, photo, catalogue):
    from rest_framework.test import APIClient

    job = run_now(start_job(user, photo, catalogue["top"]))
    assert FittingResult.objects.get(id=job.id).model == MODEL
    client = APIClient()
    client.force_authenticate(user)
    shown = client.get(f"/api/virtual-fitting/{job.id}").json()
    assert shown["status"] == "completed"
    assert shown["aiGenerated"] is True
    assert shown["engine"] == {"name": "vertex-tryon", "model": MODEL}


# --- the fake server checks what it is sent --------------------------------------------------------
def test_the_fake_refuses_a_request_of_another_shape_and_records_the_seed(tryon):
    from google.genai import errors, types

    from fitting.engines.gemini import get_client

    def call(products: int, **config):
        product = types.ProductImage(product_image=types.Image(image_bytes=_png(), mime_type="image/png"))
        return get_client().models.recontext_image(
            model=MODEL,
            source=types.RecontextImageSource(
                person_image=types.Image(image_bytes=_png(), mime_type="image/png"), product_images=[product] * products
            ),
            config=types.RecontextImageConfig(**config),
        )

    answer = call(1, number_of_images=2, seed=7)
    assert len(answer.generated_images) == 2
    assert predicts(tryon)[-1].parameters["seed"] == 7
    assert predicts(tryon)[-1].parameters["sampleCount"] == 2
    for products, config in ((2, {}), (1, {"number_of_images": 5}), (1, {"seed": -1})):
        with pytest.raises(errors.ClientError) as refused:
            call(products, **config)
        assert refused.value.code == 400
    assert len(tryon.errors) == 3
    tryon.errors.clear()  # expected here: the fixture fails a test on any other


def _png() -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.new("RGB", (32, 48), (120, 90, 60)).save(buffer, "PNG")
    return buffer.getvalue()
