"""The Gemini engine against a fake Gemini server, through the real google-genai client."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from core import images
from fitting import prompts
from fitting.engines import gemini
from fitting.engines.base import AppliedGarment, Outfit
from fitting.engines.gemini import GeminiEngine
from fitting.errors import (
    DeadlineExceeded,
    EngineBadImageError,
    EngineBlockedError,
    EngineNoImageError,
    EngineRejectedError,
    EngineUnavailableError,
)
from tests import fakegemini as fg

PERSON_SIZE = (600, 800)


def person_image(size=PERSON_SIZE) -> Image.Image:
    image = Image.new("RGB", size, (230, 220, 200))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.ellipse((w * 0.4, h * 0.2, w * 0.6, h * 0.35), fill=(200, 160, 130))  # a head
    draw.rectangle((w * 0.3, h * 0.35, w * 0.7, h * 0.9), fill=(90, 90, 90))  # a body
    return image


def garment_image(color=(20, 30, 90), mode="RGB") -> Image.Image:
    image = Image.new(mode, (300, 300), (255, 255, 255, 0) if mode == "RGBA" else (255, 255, 255))
    ImageDraw.Draw(image).rectangle((50, 50, 250, 250), fill=color)
    return image


def close_to(pixel, color, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], color, strict=True))


def marker_centre(k: int, answered: tuple[int, int], shown: tuple[int, int]) -> tuple[int, int]:
    """Where marker ``k`` of an answer of size ``answered`` lands in an image of size ``shown``."""
    x0, y0, x1, y1 = fg.marker_box(k, answered)
    return int((x0 + x1) / 2 * shown[0] / answered[0]), int((y0 + y1) / 2 * shown[1] / answered[1])


def apply(engine, *, category="top", person=None, garment=None, timeout=30.0, canvas_size=PERSON_SIZE):
    return engine.apply_garment(
        person=person or person_image(),
        garment=garment or garment_image(),
        category=category,
        canvas_size=canvas_size,
        timeout=timeout,
    )


@pytest.fixture
def engine(fake_gemini):
    return GeminiEngine()


class FakeClock:
    """The engine's clock and sleep: time moves only when the engine sleeps, by what it slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """Replace the engine's clock and sleep: retry tests see exactly what was waited."""
    fake = FakeClock()
    monkeypatch.setattr(gemini, "_now", fake.monotonic)
    monkeypatch.setattr(gemini, "_sleep", fake.sleep)
    return fake


# --- success ------------------------------------------------------------------------------
def test_three_steps_each_start_from_the_previous_output(engine, fake_gemini, settings):
    settings.GEMINI_IMAGE_MODEL = "fake-image-model"
    answered = (768, 1024)  # the model's own size, same aspect as the canvas
    fake_gemini.script_image(fg.ok(answered), fg.ok(answered), fg.ok(answered))
    garments = {
        "top": garment_image((20, 30, 90)),
        "bottom": garment_image((200, 180, 140)),
        "outer": garment_image((120, 110, 60)),
    }

    current = person_image()
    for category, garment in garments.items():
        result = apply(engine, category=category, person=current, garment=garment)
        assert result.image.size == answered  # as the model made it: the pipeline fits it
        current = images.to_canvas(result.image, PERSON_SIZE)  # as the pipeline does

    requests = fake_gemini.image_requests
    assert len(requests) == 3
    for k, (request, category) in enumerate(zip(requests, garments, strict=True)):
        assert request.path == "/v1beta/models/fake-image-model:generateContent"
        assert request.version == "v1beta"
        assert request.model == "fake-image-model"
        assert request.headers["x-goog-api-key"] == "test-key"
        assert request.generation_config["responseModalities"] == ["IMAGE"]
        assert request.texts == [prompts.step_prompt(category)]
        person, garment, canvas = request.images
        assert person.size == PERSON_SIZE
        assert garment.size == (300, 300)
        assert canvas.size == PERSON_SIZE
        assert canvas.convert("RGB").getextrema() == ((255, 255), (255, 255), (255, 255))
        # Step k+1 was sent step k's output: its person image carries marker k.
        for earlier in range(k):
            xy = marker_centre(earlier, answered, PERSON_SIZE)
            assert close_to(person.convert("RGB").getpixel(xy), fg.marker_color(earlier))
        assert not close_to(person.convert("RGB").getpixel(marker_centre(k, answered, PERSON_SIZE)), fg.marker_color(k))
    for k in range(3):
        assert close_to(current.getpixel(marker_centre(k, answered, PERSON_SIZE)), fg.marker_color(k))


def test_image_found_after_a_text_part(engine, fake_gemini):
    fake_gemini.script_image(fg.ok(text="Here is the person wearing the shirt."))
    assert apply(engine).image.size == PERSON_SIZE


def test_usage_tokens_are_returned(engine, fake_gemini):
    fake_gemini.script_image(
        fg.ok(usage={"promptTokenCount": 1800, "candidatesTokenCount": 1290, "totalTokenCount": 3090})
    )
    result = apply(engine)
    assert result.usage == {"prompt_tokens": 1800, "candidates_tokens": 1290, "total_tokens": 3090}


def test_missing_usage_counts_are_left_out(engine, fake_gemini):
    fake_gemini.script_image(fg.ok(usage={"promptTokenCount": 1800}))
    assert apply(engine).usage == {"prompt_tokens": 1800}


def test_large_inputs_are_downscaled(engine, fake_gemini):
    big = (3000, 4000)
    apply(engine, person=person_image(big), canvas_size=big)
    person, _garment, canvas = fake_gemini.image_requests[0].images
    assert max(person.size) <= gemini.MAX_INPUT_SIDE
    assert person.size == canvas.size == (1536, 2048)


def test_photos_go_as_jpeg_and_transparent_garments_as_png(engine, fake_gemini):
    apply(engine, garment=garment_image(mode="RGBA"))
    assert fake_gemini.image_requests[0].mime_types == ["image/jpeg", "image/png", "image/png"]


def test_one_client_per_process_is_kept(fake_gemini):
    assert gemini.get_client() is gemini.get_client()


# --- retries ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_error_is_retried(engine, fake_gemini, status):
    fake_gemini.script_image(fg.fail(status), fg.ok())
    result = apply(engine)
    assert result.image.size == PERSON_SIZE
    assert len(fake_gemini.image_requests) == 2


def test_dropped_connection_is_retried(engine, fake_gemini):
    fake_gemini.script_image(fg.disconnect(), fg.ok())
    assert apply(engine).image.size == PERSON_SIZE
    assert len(fake_gemini.image_requests) == 2


def test_persistent_server_error_is_unavailable_before_the_deadline(engine, fake_gemini, settings, clock):
    settings.GEMINI_RETRY_ATTEMPTS = 3
    fake_gemini.script_image(*[fg.fail(500, "Internal error encountered.")] * 10)
    with pytest.raises(EngineUnavailableError) as raised:
        apply(engine, timeout=30)
    assert len(fake_gemini.image_requests) == 3
    assert len(clock.sleeps) == 2  # a backoff between attempts, none after the last
    assert all(0 < s <= settings.GEMINI_RETRY_MAX_DELAY for s in clock.sleeps)
    assert "500" in raised.value.message
    assert raised.value.code == "ENGINE_UNAVAILABLE"


def test_server_retry_delay_is_honoured(engine, fake_gemini, clock):
    fake_gemini.script_image(fg.fail(429, retry_delay="0.4s"), fg.ok())
    apply(engine)
    assert clock.sleeps == [0.4]  # the server's RetryInfo, not the (shorter) backoff
    assert len(fake_gemini.image_requests) == 2


def test_retry_delay_beyond_the_deadline_gives_up_at_once(engine, fake_gemini, clock):
    fake_gemini.script_image(fg.fail(429, "Quota exceeded.", retry_delay="60s"))
    with pytest.raises(EngineUnavailableError) as raised:
        apply(engine, timeout=5)
    assert clock.sleeps == []
    assert len(fake_gemini.image_requests) == 1
    assert "429" in raised.value.message


def test_retries_never_run_past_the_deadline(engine, fake_gemini, settings, clock):
    settings.GEMINI_RETRY_ATTEMPTS = 100
    settings.GEMINI_RETRY_INITIAL_DELAY = 1
    settings.GEMINI_RETRY_MAX_DELAY = 4
    fake_gemini.script_image(*[fg.fail(503)] * 100)
    started = clock.now
    with pytest.raises(EngineUnavailableError):
        apply(engine, timeout=20)
    slept = clock.now - started
    assert len(fake_gemini.image_requests) == len(clock.sleeps) + 1
    # Never slept into the deadline: the last attempt still had its minimum time ...
    assert slept + gemini.MIN_ATTEMPT_SECONDS < 20
    # ... and it stopped only because the next wait (at most the maximum delay) would not fit.
    assert slept + settings.GEMINI_RETRY_MAX_DELAY + gemini.MIN_ATTEMPT_SECONDS >= 20
    assert len(clock.sleeps) >= 4


@pytest.mark.parametrize("status", [400, 401, 403])  # 404: test_model_unavailable.py
def test_client_error_is_rejected_without_retry(engine, fake_gemini, status):
    fake_gemini.script_image(fg.fail(status, "Request contains an invalid argument."))
    with pytest.raises(EngineRejectedError) as raised:
        apply(engine)
    assert len(fake_gemini.image_requests) == 1
    assert str(status) in raised.value.message
    assert "invalid argument" in raised.value.message
    assert raised.value.code == "ENGINE_REJECTED"


# --- the deadline -------------------------------------------------------------------------
def test_slow_answer_hits_the_deadline(engine, fake_gemini):
    fake_gemini.script_image(fg.delay(60))  # answers only if the attempt's timeout is not applied
    with pytest.raises(DeadlineExceeded) as raised:
        apply(engine, timeout=1.5)
    assert raised.value.code == "TIMEOUT"
    assert len(fake_gemini.image_requests) == 1
    assert fake_gemini.image_requests[0].headers["x-server-timeout"] == "2"  # 1.5 s, rounded up


def test_no_call_when_no_time_is_left(engine, fake_gemini):
    with pytest.raises(DeadlineExceeded):
        apply(engine, timeout=0)
    assert fake_gemini.requests == []


def test_each_attempt_is_given_the_time_left(engine, fake_gemini, clock):
    # The SDK sends each attempt's timeout, rounded up to whole seconds, as X-Server-Timeout.
    fake_gemini.script_image(fg.fail(503, retry_delay="2.5s"), fg.ok())
    apply(engine, timeout=10)
    first, second = (int(r.headers["x-server-timeout"]) for r in fake_gemini.image_requests)
    assert clock.sleeps == [2.5]
    assert first == 10
    assert second == 8  # 7.5 s left after the wait


# --- answers without a usable image -------------------------------------------------------
@pytest.mark.parametrize(
    "reason",
    [
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_OTHER",
        "PROHIBITED_CONTENT",
        "SAFETY",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
    ],
)
def test_blocked_candidate(engine, fake_gemini, reason):
    fake_gemini.script_image(fg.block(reason))
    with pytest.raises(EngineBlockedError) as raised:
        apply(engine)
    assert reason in raised.value.message
    assert raised.value.code == "ENGINE_BLOCKED"
    assert len(fake_gemini.image_requests) == 1


@pytest.mark.parametrize("reason", ["SAFETY", "OTHER", "PROHIBITED_CONTENT", "IMAGE_SAFETY"])
def test_blocked_prompt(engine, fake_gemini, reason):
    fake_gemini.script_image(fg.block_prompt(reason))
    with pytest.raises(EngineBlockedError) as raised:
        apply(engine)
    assert reason in raised.value.message


@pytest.mark.parametrize("finish_reason", ["STOP", "NO_IMAGE"])
def test_text_only_answer_is_no_image(engine, fake_gemini, finish_reason):
    fake_gemini.script_image(fg.text_only("I cannot edit this photo.", finish_reason))
    with pytest.raises(EngineNoImageError) as raised:
        apply(engine)
    assert raised.value.code == "ENGINE_NO_IMAGE"
    assert finish_reason in raised.value.message
    assert len(fake_gemini.image_requests) == 1


def test_undecodable_image_is_bad_image(engine, fake_gemini):
    fake_gemini.script_image(fg.bad_image())
    with pytest.raises(EngineBadImageError) as raised:
        apply(engine)
    assert raised.value.code == "ENGINE_BAD_IMAGE"


# --- the recommendation message -----------------------------------------------------------
def outfit(*garments: AppliedGarment) -> Outfit:
    return Outfit(image=person_image(), garments=garments)


def test_message_uses_the_text_model_and_the_seed_prompt(engine, fake_gemini, settings):
    settings.GEMINI_TEXT_MODEL = "fake-text-model"
    message = engine.write_message(outfit=outfit(AppliedGarment("top", garment_image())), timeout=30)
    assert message == "오늘 코디 정말 잘 어울려요! ✨"
    (request,) = fake_gemini.text_requests
    assert request.model == "fake-text-model"
    assert request.headers["x-goog-api-key"] == "test-key"
    assert request.texts == [prompts.MESSAGE_PROMPT]
    assert [image.size for image in request.images] == [PERSON_SIZE]
    assert "IMAGE" not in (request.generation_config.get("responseModalities") or [])


def test_message_is_normalised(engine, fake_gemini):
    fake_gemini.script_text(fg.text('"**정말 멋진 코디예요!**" 😊\n\n이런 메시지는 어떨까요?'))
    assert engine.write_message(outfit=outfit(), timeout=30) == "정말 멋진 코디예요! 😊"


def test_message_is_retried_after_a_transient_error(engine, fake_gemini):
    fake_gemini.script_text(fg.fail(503), fg.text("잘 어울려요! 🎉"))
    assert engine.write_message(outfit=outfit(), timeout=30) == "잘 어울려요! 🎉"


@pytest.mark.parametrize("answer", [fg.block_prompt("SAFETY"), fg.text("  ")])
def test_message_without_text_is_none(engine, fake_gemini, answer):
    fake_gemini.script_text(answer)
    assert engine.write_message(outfit=outfit(), timeout=30) is None


@pytest.mark.parametrize("status", [400, 403])
def test_rejected_message_raises(engine, fake_gemini, status):
    # The pipeline turns any failure into a job completed without a message.
    fake_gemini.script_text(fg.fail(status))
    with pytest.raises(EngineRejectedError):
        engine.write_message(outfit=outfit(), timeout=30)
    assert len(fake_gemini.text_requests) == 1


def test_persistently_failing_message_raises(engine, fake_gemini):
    fake_gemini.script_text(*[fg.fail(500)] * 10)
    with pytest.raises(EngineUnavailableError):
        engine.write_message(outfit=outfit(), timeout=30)


def test_slow_message_past_its_timeout_raises(engine, fake_gemini):
    fake_gemini.script_text(fg.delay(60))  # answers only if the timeout is not applied
    with pytest.raises(DeadlineExceeded):
        engine.write_message(outfit=outfit(), timeout=1)
    (request,) = fake_gemini.text_requests
    assert request.headers["x-server-timeout"] == "1"
