"""Current models, the lifecycle check, check_engine's probe and a shut-down model's failure (issue 21).

On the fake Gemini server with the real google-genai client: a retired model is answered as
the real API answers a shut-down one (404 NOT_FOUND), and ``models.get`` as the real API does.
"""

from __future__ import annotations

import logging
from datetime import date

import pytest
from django.conf import settings as django_settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError

from fitting import checks
from fitting.engines import catalog, gemini
from fitting.errors import FailureCode
from fitting.models import Status
from tests.factories import make_job, make_photo, run_now, start_job

OLD_IMAGE, OLD_TEXT = "gemini-2.5-flash-image", "gemini-2.5-flash"


def run(cmd: str, *args: str) -> tuple[str, CommandError | None]:
    """A management command's stdout, and the CommandError it ended with (None: exit status 0)."""
    from io import StringIO

    out = StringIO()
    try:
        call_command(cmd, *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


# --- the defaults -----------------------------------------------------------------------------
def test_the_defaults_are_current_models_of_the_table():
    assert (django_settings.GEMINI_IMAGE_MODEL, django_settings.GEMINI_TEXT_MODEL) == (
        "gemini-3.1-flash-image",
        "gemini-3.5-flash",
    )
    for model, kind in ((django_settings.GEMINI_IMAGE_MODEL, "image"), (django_settings.GEMINI_TEXT_MODEL, "text")):
        known = catalog.known_model(model)
        assert known is not None and known.kind == kind and known.shutdown is None


def test_the_table_rows_are_well_formed():
    for model in catalog.MODELS:
        assert model.kind in (catalog.IMAGE, catalog.TEXT, catalog.TRY_ON), model
        for price in (model.input_price, model.output_price, model.image_price):
            assert price is None or (type(price) is float and price >= 0), model
        # Every Gemini 3.x image model, previews too, takes image_config.image_size; 2.5 does not.
        is_3x_image = model.kind == catalog.IMAGE and model.name.startswith("gemini-3")
        assert model.takes_image_size == is_3x_image, model


def test_the_defaults_run_a_job(fake_gemini, user, photo, catalogue):
    fake_gemini.retire(OLD_IMAGE, OLD_TEXT)  # as the real API does today: the old defaults are gone
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert (job.status, job.error_code) == (Status.COMPLETED, ""), job.error_message
    assert job.llm_message
    assert job.model == "gemini-3.1-flash-image"
    assert [r.model for r in fake_gemini.requests] == ["gemini-3.1-flash-image"] * 2 + ["gemini-3.5-flash"]


# --- a shut-down model ---------------------------------------------------------------------------
def test_a_retired_image_model_fails_the_step_after_exactly_one_call(fake_gemini, settings, user, photo, catalogue):
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE
    fake_gemini.retire(OLD_IMAGE)

    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))

    assert (job.status, job.failed_step, job.error_code) == (Status.FAILED, "top", FailureCode.ENGINE_MODEL_UNAVAILABLE)
    assert len(fake_gemini.image_requests) == 1  # a 404 is not retried
    assert fake_gemini.text_requests == []
    # Staff read the model, the provider's words and the setting to change ...
    assert OLD_IMAGE in job.error_message and "GEMINI_IMAGE_MODEL" in job.error_message
    assert "NOT_FOUND" in job.error_message


def test_the_user_is_told_the_service_is_being_updated(client, fake_gemini, settings, user, photo, catalogue):
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE
    fake_gemini.retire(OLD_IMAGE)
    job = run_now(start_job(user, photo, catalogue["top"]))
    client.force_login(user)

    english = client.get(f"/api/virtual-fitting/{job.id}", HTTP_ACCEPT_LANGUAGE="en").json()["error"]
    korean = client.get(f"/api/virtual-fitting/{job.id}", HTTP_ACCEPT_LANGUAGE="ko").json()["error"]

    assert english == {
        "code": "ENGINE_MODEL_UNAVAILABLE",
        "message": "The service is being updated. Please try again later.",
    }
    assert korean["message"] == "서비스를 업데이트하고 있습니다. 잠시 후 다시 시도해 주세요."
    assert OLD_IMAGE not in str(english)  # no internal detail for users


def test_a_retired_text_model_leaves_the_job_completed_without_a_message(fake_gemini, settings, user, photo, catalogue):
    settings.GEMINI_TEXT_MODEL = OLD_TEXT
    fake_gemini.retire(OLD_TEXT)

    job = run_now(start_job(user, photo, catalogue["top"]))

    assert (job.status, job.error_code, job.llm_message) == (Status.COMPLETED, "", None)
    assert [r.model for r in fake_gemini.text_requests] == [OLD_TEXT]  # asked once, not retried


def test_the_engine_raises_model_unavailable_naming_the_text_setting(fake_gemini, settings):
    from fitting.engines.base import Outfit
    from fitting.errors import EngineModelUnavailableError
    from tests.fitting.test_gemini_engine import person_image

    settings.GEMINI_TEXT_MODEL = OLD_TEXT
    fake_gemini.retire(OLD_TEXT)
    with pytest.raises(EngineModelUnavailableError) as raised:
        gemini.GeminiEngine().write_message(outfit=Outfit(image=person_image(), garments=()), timeout=10)
    assert OLD_TEXT in raised.value.message and "GEMINI_TEXT_MODEL" in raised.value.message


def test_reprocess_with_the_engine_restarts_such_jobs_once_the_setting_is_changed(
    fake_gemini, settings, user, photo, catalogue
):
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE
    fake_gemini.retire(OLD_IMAGE)
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert job.error_code == FailureCode.ENGINE_MODEL_UNAVAILABLE

    settings.GEMINI_IMAGE_MODEL = "gemini-3.1-flash-image"  # the operator changes the setting
    out, refused = run("reprocess_failed_fittings", "--sync")  # without --engine: pinned to the old model
    assert refused is not None and "refused" in out
    out, failed = run("reprocess_failed_fittings", "--engine", "gemini", "--sync")

    assert failed is None, out
    job.refresh_from_db()
    assert (job.status, job.model, job.error_code) == (Status.COMPLETED, "gemini-3.1-flash-image", "")
    assert "engine gemini->gemini" in out and "restarted" in out
    assert [r.model for r in fake_gemini.image_requests] == [OLD_IMAGE] + ["gemini-3.1-flash-image"] * 2


def test_the_admin_filter_and_the_dashboard_show_the_code(admin_client, user, photo, catalogue):
    make_job(
        user,
        photo,
        catalogue["top"],
        failed_step="top",
        error_code=FailureCode.ENGINE_MODEL_UNAVAILABLE,
        error_message=f"The model {OLD_IMAGE} is not served (404 NOT_FOUND …). Set GEMINI_IMAGE_MODEL …",
    )
    changelist = admin_client.get("/admin/fitting/fittingresult/").content.decode()
    assert "?error_code__exact=ENGINE_MODEL_UNAVAILABLE" in changelist
    filtered = admin_client.get("/admin/fitting/fittingresult/?error_code__exact=ENGINE_MODEL_UNAVAILABLE")
    assert filtered.status_code == 200 and filtered.context["cl"].result_count == 1
    assert "ENGINE_MODEL_UNAVAILABLE" in admin_client.get("/admin/dashboard/").content.decode()


# --- image_config.image_size -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "expected"), [((1200, 1600), "2K"), ((1024, 768), "1K"), ((64, 96), "1K"), ((1025, 300), "2K")]
)
def test_image_size_follows_the_canvas(size, expected):
    assert gemini.image_size_for(size) == expected


@pytest.mark.parametrize(("size", "expected"), [((1200, 1600), "2K"), ((600, 800), "1K")])
def test_a_3x_image_model_is_sent_the_image_size(fake_gemini, user, catalogue, size, expected):
    photo = make_photo(user, size=size)
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == Status.COMPLETED, job.error_message
    config = fake_gemini.image_requests[0].generation_config["imageConfig"]
    assert config == {"aspectRatio": "3:4", "imageSize": expected}


def test_a_2_5_image_model_is_not_sent_an_image_size(fake_gemini, settings, user, catalogue):
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE  # not retired here: what is sent is the point
    photo = make_photo(user, size=(1200, 1600))
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == Status.COMPLETED, job.error_message
    assert fake_gemini.image_requests[0].generation_config["imageConfig"] == {"aspectRatio": "3:4"}


# --- the system check (dates frozen by passing "today") -------------------------------------------
def warning_ids(found) -> list[tuple[str, str]]:
    return [(w.id, w.msg.split(":")[0]) for w in found]


def test_the_check_warns_for_a_passed_shutdown(settings):
    settings.FITTING_ENGINE = "gemini"
    settings.GEMINI_IMAGE_MODEL, settings.GEMINI_TEXT_MODEL = OLD_IMAGE, OLD_TEXT
    found = checks.model_warnings(today=date(2026, 12, 4))
    assert warning_ids(found) == [
        ("fitting.W001", f"GEMINI_IMAGE_MODEL={OLD_IMAGE}"),
        ("fitting.W001", f"GEMINI_TEXT_MODEL={OLD_TEXT}"),
    ]
    assert "2026-10-02" in found[0].msg and "GEMINI_IMAGE_MODEL" in found[0].hint


def test_the_check_warns_within_sixty_days_and_not_before(settings):
    settings.FITTING_ENGINE = "gemini"
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE  # announced for 2026-10-02
    assert warning_ids(checks.model_warnings(today=date(2026, 8, 3))) == [
        ("fitting.W002", f"GEMINI_IMAGE_MODEL={OLD_IMAGE}")
    ]  # 60 days before
    assert checks.model_warnings(today=date(2026, 8, 2)) == []  # 61 days before


def test_the_check_warns_for_a_model_not_in_the_table(settings):
    settings.FITTING_ENGINE = "gemini"
    settings.GEMINI_TEXT_MODEL = "my-gateway-model"
    assert warning_ids(checks.model_warnings(today=date(2026, 12, 4))) == [
        ("fitting.W003", "GEMINI_TEXT_MODEL=my-gateway-model")
    ]


def test_the_check_is_silent_for_the_defaults_and_for_the_local_engine(settings):
    settings.FITTING_ENGINE = "gemini"
    assert checks.model_warnings(today=date(2026, 12, 4)) == []
    settings.FITTING_ENGINE = "local"
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE  # not used by the local engine
    assert checks.model_warnings(today=date(2030, 1, 1)) == []


def test_the_check_is_registered_for_check_and_check_deploy(settings, monkeypatch):
    from datetime import datetime

    from django.utils import timezone

    settings.FITTING_ENGINE = "gemini"
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE
    frozen = datetime(2026, 12, 4, 12, tzinfo=timezone.get_current_timezone())
    monkeypatch.setattr(timezone, "now", lambda: frozen)  # the date only, in this test
    for deploy in (False, True):
        ids = [w.id for w in run_checks(include_deployment_checks=deploy) if w.id.startswith("fitting.")]
        assert ids == ["fitting.W001"], deploy


# --- check_engine: the provider's answer ------------------------------------------------------------
def test_check_engine_exits_0_when_every_model_is_served(fake_gemini):
    out, failed = run("check_engine")
    assert failed is None
    assert out.splitlines() == [
        f"GEMINI_IMAGE_MODEL=gemini-3.1-flash-image: served via {fake_gemini.base_url}",
        f"GEMINI_TEXT_MODEL=gemini-3.5-flash: served via {fake_gemini.base_url}",
    ]
    assert fake_gemini.model_gets == ["/v1beta/models/gemini-3.1-flash-image", "/v1beta/models/gemini-3.5-flash"]
    assert fake_gemini.requests == []  # asking costs no generation


def test_check_engine_exits_1_naming_the_setting_when_a_model_is_not_served(fake_gemini, settings):
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE
    fake_gemini.retire(OLD_IMAGE)
    out, failed = run("check_engine")
    assert failed is not None and failed.returncode == 1
    assert "GEMINI_IMAGE_MODEL" in str(failed) and "GEMINI_TEXT_MODEL" not in str(failed)
    image, text = out.splitlines()
    assert image.startswith(f"GEMINI_IMAGE_MODEL={OLD_IMAGE}: NOT served (HTTP 404 NOT_FOUND models/{OLD_IMAGE} is not")
    assert text.startswith("GEMINI_TEXT_MODEL=gemini-3.5-flash: served")


def test_check_engine_exits_1_when_the_provider_does_not_answer(fake_gemini, settings):
    fake_gemini.stop()
    out, failed = run("check_engine")
    assert failed is not None and failed.returncode == 1
    assert "did not answer" in str(failed)
    assert all(": no answer (" in line for line in out.splitlines())


@pytest.mark.parametrize(
    ("status", "message", "advice"),
    [
        (400, "API key not valid. Please pass a valid API key.", "check the credentials"),
        (403, "Permission denied on resource project.", "check the credentials"),
        (429, "Resource has been exhausted", "try again later"),
        (503, "The model is overloaded.", "try again later"),
    ],
)
def test_check_engine_names_a_setting_only_when_the_model_is_gone(fake_gemini, caplog, status, message, advice):
    fake_gemini.model_get_error = (status, message)
    out, failed = run("check_engine")
    assert failed is not None and failed.returncode == 1
    assert advice in str(failed) and "change GEMINI" not in str(failed)
    assert all(f"NOT served (HTTP {status}" in line for line in out.splitlines())
    with caplog.at_level(logging.INFO, logger="fitting.engines.gemini"):
        gemini.log_model_probe()  # the worker's log does not blame the model either
    assert not any("ENGINE_MODEL_UNAVAILABLE" in r.getMessage() for r in caplog.records)


def test_check_engine_asks_vertex_ai_on_its_paths(fake_gemini, settings, monkeypatch):
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    settings.GEMINI_USE_VERTEXAI = True  # express mode: a Vertex AI API key
    settings.GEMINI_API_VERSION = "v1beta1"
    gemini.reset_client()
    fake_gemini.retire("gemini-3.5-flash")
    out, failed = run("check_engine")
    assert fake_gemini.model_gets == [
        "/v1beta1/publishers/google/models/gemini-3.1-flash-image",
        "/v1beta1/publishers/google/models/gemini-3.5-flash",
    ]
    assert failed is not None and "GEMINI_TEXT_MODEL" in str(failed)
    assert ": served" in out.splitlines()[0] and "NOT served (HTTP 404" in out.splitlines()[1]


def test_check_engine_with_the_local_engine_has_nothing_to_ask(settings):
    settings.FITTING_ENGINE = "local"
    out, failed = run("check_engine")
    assert failed is None and out.strip() == "FITTING_ENGINE=local: no provider model to check"


# --- the worker's probe at start -------------------------------------------------------------------
def test_the_worker_probe_logs_each_model_and_never_raises(fake_gemini, settings, caplog):
    settings.GEMINI_IMAGE_MODEL = OLD_IMAGE
    fake_gemini.retire(OLD_IMAGE)
    with caplog.at_level(logging.INFO, logger="fitting.engines.gemini"):
        gemini.log_model_probe()
    records = [(r.levelname, r.getMessage()) for r in caplog.records if "model check" in r.getMessage()]
    assert [level for level, _ in records] == ["ERROR", "INFO"]
    assert "GEMINI_IMAGE_MODEL" in records[0][1] and "ENGINE_MODEL_UNAVAILABLE" in records[0][1]

    caplog.clear()
    fake_gemini.stop()  # a network blip: logged, not raised
    with caplog.at_level(logging.INFO, logger="fitting.engines.gemini"):
        gemini.log_model_probe()
    assert [r.levelname for r in caplog.records if "model check" in r.getMessage()] == ["WARNING", "WARNING"]


@pytest.mark.queue
def test_a_worker_node_logs_the_probe_once_at_start_and_still_runs_jobs(tmp_path):
    """A real qcluster: a model that is not served is logged at start, and the cluster works anyway."""
    from tests.e2e import Stack
    from tests.fakegemini import FakeGemini

    fake = FakeGemini().start()
    fake.retire("gemini-3.5-flash")  # the text model: jobs complete, without a message
    stack = Stack(
        tmp_path,
        FITTING_ENGINE="gemini",
        GEMINI_API_KEY="test-key",
        GEMINI_BASE_URL=fake.base_url,
        FITTING_RESULT_CACHE="false",
    ).prepare()
    try:
        stack.start_web()
        stack.start_cluster()
        with stack.client() as client:
            job = stack.wait_for_job(client, stack.start_job(client))
        assert (job["status"], job["llmMessage"]) == ("completed", None)
        log = stack.output("worker", tail=None)
        assert log.count("Gemini model check") == 2, log  # once per node, not per worker process
        assert "GEMINI_IMAGE_MODEL=gemini-3.1-flash-image: served" in log
        assert "GEMINI_TEXT_MODEL=gemini-3.5-flash: NOT served (HTTP 404 NOT_FOUND" in log
        assert len(fake.model_gets) == 2
    finally:
        stack.stop()
        fake.stop()
