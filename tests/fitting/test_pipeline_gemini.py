"""The job through the real google-genai client against the fake Gemini server."""

import io

import pytest
from django.db import connection
from PIL import Image

from fitting.models import FittingResult
from tests.factories import run_now, start_job
from tests.fakegemini import bad_image, block, delay, fail, marker_box, marker_color, ok, text_only


def assert_marker(image: Image.Image, k: int, size) -> None:
    left, top, right, bottom = marker_box(k, size)
    pixel = image.convert("RGB").getpixel(((left + right) // 2, (top + bottom) // 2))
    assert all(abs(a - b) < 40 for a, b in zip(pixel, marker_color(k), strict=True)), (k, pixel)


@pytest.mark.django_db(transaction=True)
def test_states_are_committed_before_each_step(fake_gemini, user, photo, catalogue):
    seen = []

    def observe(request):  # runs in the fake server's thread, on its own DB connection
        if request.wants_image:
            try:
                job = FittingResult.objects.get()
                seen.append((job.status, job.current_step, sorted(job.images.values_list("step", flat=True))))
            finally:
                connection.close()

    fake_gemini.on_request = observe
    job = run_now(start_job(user, photo, catalogue["outer"], catalogue["top"], catalogue["bottom"]))
    assert seen == [
        ("processing", "top", []),
        ("processing", "bottom", ["top"]),
        ("processing", "outer", ["bottom", "top"]),
    ]
    assert (job.status, job.current_step) == ("completed", None)


def test_each_step_starts_from_the_previous_output(fake_gemini, user, photo, catalogue, settings):
    size = (photo.width, photo.height)
    fake_gemini.script_image(ok(size=(size[0] * 2, size[1] * 2)), ok(), ok())  # step 1 answers too large
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"], catalogue["outer"]))
    assert job.status == "completed", job.error_message
    calls = fake_gemini.image_requests
    assert len(calls) == 3
    for k, call in enumerate(calls):
        assert call.model == settings.GEMINI_IMAGE_MODEL
        assert call.headers["x-goog-api-key"] == "test-key"
        person, _garment, canvas = call.images
        assert person.size == size and canvas.size == size
        for earlier in range(k):  # step k received every earlier step's marker
            assert_marker(person, earlier, size)
    assert fake_gemini.text_requests[0].model == settings.GEMINI_TEXT_MODEL
    final = Image.open(io.BytesIO(job.images.get(step="final").image.read()))
    assert final.size == size
    assert_marker(final, 2, size)
    assert job.step_metrics["top"]["total_tokens"] > 0


def test_an_answer_of_another_aspect_is_cropped_to_the_canvas(fake_gemini, user, photo, catalogue):
    size = (photo.width, photo.height)
    fake_gemini.script_image(ok(size=(size[0], size[0])))  # square: covered and centre-cropped
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "completed", job.error_message
    row = job.images.get(step="top")
    assert (row.width, row.height) == size
    assert Image.open(io.BytesIO(row.image.read())).size == size


def test_failure_at_the_second_step_keeps_the_first(fake_gemini, user, photo, catalogue):
    fake_gemini.script_image(ok(), fail(400, "bad garment"))
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"], catalogue["outer"]))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "bottom", "ENGINE_REJECTED")
    assert "bad garment" in job.error_message
    assert list(job.images.values_list("step", flat=True)) == ["top"]
    assert len(fake_gemini.image_requests) == 2


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [
        (block("IMAGE_SAFETY"), "ENGINE_BLOCKED"),
        (text_only(), "ENGINE_NO_IMAGE"),
        (bad_image(), "ENGINE_BAD_IMAGE"),
        (fail(500), "ENGINE_UNAVAILABLE"),
    ],
)
def test_engine_outcomes_are_stored_on_the_job(fake_gemini, user, photo, catalogue, behaviour, code):
    fake_gemini.script_image(*[behaviour] * 10)
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.failed_step, job.error_code) == ("failed", "top", code)
    assert job.finished_at is not None


def test_transient_failure_is_retried_within_the_step(fake_gemini, user, photo, catalogue):
    fake_gemini.script_image(fail(503), fail(429), ok())
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "completed"
    assert len(fake_gemini.image_requests) == 3


def test_slow_step_ends_the_job_as_timeout(fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_JOB_TIMEOUT = 3
    fake_gemini.script_image(ok(), delay(60))  # bottom answers only if the deadline is not applied
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert (job.status, job.failed_step, job.error_code) == ("timeout", "bottom", "TIMEOUT")
    assert list(job.images.values_list("step", flat=True)) == ["top"]


def test_message_failure_still_completes(fake_gemini, user, photo, catalogue):
    fake_gemini.script_text(fail(500), fail(500), fail(500), fail(500), fail(500), fail(500))
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.status == "completed"
    assert job.llm_message is None
    assert job.images.filter(step="final").exists()


def test_message_is_normalised(fake_gemini, user, photo, catalogue):
    from tests.fakegemini import text

    fake_gemini.script_text(text('"**정말 잘 어울려요!** 다음에는 모자도 써 보세요."'))
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert job.llm_message.startswith("정말 잘 어울려요!")
    assert "다음" not in job.llm_message and '"' not in job.llm_message and "*" not in job.llm_message


def test_slow_message_past_its_budget_completes_without_one(fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_MESSAGE_TIMEOUT = 1
    fake_gemini.script_text(delay(60))  # answers only if the budget is not applied
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.llm_message) == ("completed", None)
    (request,) = fake_gemini.text_requests
    assert request.headers["x-server-timeout"] == "1"


def test_message_budget_is_capped_by_the_job_time_left(fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_MESSAGE_TIMEOUT = 15
    settings.FITTING_JOB_TIMEOUT = 3
    fake_gemini.script_text(delay(60))
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.llm_message) == ("completed", None)
    (request,) = fake_gemini.text_requests
    assert int(request.headers["x-server-timeout"]) <= 3


def test_no_message_is_asked_for_with_too_little_time(fake_gemini, user, photo, catalogue, settings):
    settings.FITTING_MESSAGE_TIMEOUT = 0.2  # below MIN_ATTEMPT_SECONDS
    job = run_now(start_job(user, photo, catalogue["top"]))
    assert (job.status, job.llm_message) == ("completed", None)
    assert fake_gemini.text_requests == []
    assert "message" not in job.step_metrics


def _inline_bytes(request) -> list[bytes]:
    """The inline images of a recorded request, as the bytes that were sent."""
    from tests.fakegemini import _b64decode

    return [
        _b64decode((part.get("inlineData") or part.get("inline_data"))["data"])
        for content in request.body["contents"]
        for part in content["parts"]
        if part.get("inlineData") or part.get("inline_data")
    ]


def test_a_step_image_is_encoded_once_and_sent_on_as_stored(fake_gemini, user, photo, catalogue):
    """The next step and the message are sent the stored JPEG of the step before, not a new encoding."""
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"], catalogue["outer"]))
    assert job.status == "completed", job.error_message
    stored = {image.step: image.image.read() for image in job.images.all()}
    calls = fake_gemini.image_requests
    assert _inline_bytes(calls[1])[0] == stored["top"]
    assert _inline_bytes(calls[2])[0] == stored["bottom"]
    assert _inline_bytes(fake_gemini.text_requests[0]) == [stored["outer"]] == [stored["final"]]
    assert calls[1].mime_types[0] == "image/jpeg"


def test_the_first_step_is_sent_the_stored_photo_as_stored(fake_gemini, user, photo, catalogue):
    """Step 1's person image is the stored photo's JPEG itself, not a decode and a new encoding."""
    job = run_now(start_job(user, photo, catalogue["top"], catalogue["bottom"]))
    assert job.status == "completed", job.error_message
    photo.image.open("rb")
    with photo.image:
        stored = photo.image.read()
    first = fake_gemini.image_requests[0]
    assert _inline_bytes(first)[0] == stored
    assert first.mime_types[0] == "image/jpeg"
