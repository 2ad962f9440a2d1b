"""The Gemini engine: each fitting step is one image-model call, the message one text call.

Retries: transient failures (408, 429, 5xx, connection errors) are retried with tenacity
here rather than with the SDK's ``HttpRetryOptions``. The SDK's retry knows an attempt
count and a per-attempt timeout, not our job's deadline: it would keep the same timeout
for every attempt and sleep regardless of the time left, so a step could overrun the job.
Our loop gives each attempt exactly the time left (``HttpOptions.timeout``, in
milliseconds), never sleeps past the deadline, and honours the server's ``RetryInfo`` on
429. The SDK's own retry stays off (its default when ``retry_options`` is unset).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import tenacity
from django.conf import settings
from google import genai
from google.genai import errors, types
from PIL import Image

from core import images
from core.errors import ServiceError
from fitting import prompts
from fitting.engines.base import MIN_ATTEMPT_SECONDS, KeepGoing, Outfit, StepAbandoned, StepResult
from fitting.engines.catalog import known_model
from fitting.engines.identity import EngineIdentity, engine_models, gemini_identity
from fitting.errors import (
    DeadlineExceeded,
    EngineBadImageError,
    EngineBlockedError,
    EngineError,
    EngineModelUnavailableError,
    EngineNoImageError,
    EngineRejectedError,
    EngineUnavailableError,
)

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
try:  # the SDK uses httpx2 instead of httpx when it is installed
    import httpx2

    _TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError, httpx2.TransportError)
    _TIMEOUT_ERRORS: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx2.TimeoutException)
except ImportError:  # pragma: no cover
    _TRANSPORT_ERRORS = (httpx.TransportError,)
    _TIMEOUT_ERRORS = (httpx.TimeoutException,)

# Finish reasons that mean "refused for safety or policy reasons", not "failed".
BLOCK_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "IMAGE_OTHER",
        "MODEL_ARMOR",
    }
)
# The engine's clock and the retry loop's sleep, read at each call: tests replace them to
# see exactly what was waited, instead of timing the wall clock.
_now = time.monotonic
_sleep = time.sleep
# Inputs are downscaled to this long side: the image model answers at about 1 megapixel
# whatever it is sent, and a request's inline data is limited to 20 MB.
MAX_INPUT_SIDE = 2048


# --- the client: one per process ------------------------------------------------------------
_client_lock = threading.Lock()
_client_cache: tuple[tuple, genai.Client] | None = None


def get_client() -> genai.Client:
    """The process's ``genai.Client``, built on first use and kept referenced.

    The SDK client closes its connection pool when garbage-collected, so it is held here
    for the life of the process. It is rebuilt when the settings it was made from change
    (tests point it at a fake server) or in a forked child (connections are not shared
    across a fork).
    """
    global _client_cache
    key = (
        os.getpid(),
        settings.GEMINI_API_KEY,
        settings.GEMINI_BASE_URL,
        settings.GEMINI_API_VERSION,
        settings.GEMINI_USE_VERTEXAI,
        settings.GOOGLE_CLOUD_PROJECT,
        settings.GOOGLE_CLOUD_LOCATION,
    )
    with _client_lock:
        if _client_cache is None or _client_cache[0] != key:
            client = genai.Client(
                **_client_auth(),
                http_options=types.HttpOptions(
                    base_url=settings.GEMINI_BASE_URL or None,
                    api_version=settings.GEMINI_API_VERSION,
                ),
            )
            _client_cache = (key, client)
        return _client_cache[1]


def _client_auth() -> dict:
    """The client's endpoint and credentials, from the settings only (never the SDK's own
    reading of the environment, so the settings checked at start are the ones used).

    - the Gemini API: an API key;
    - Vertex AI with a project and a location: application default credentials, looked up
      by google-auth at the first call (``projects/{p}/locations/{l}/publishers/google/models/…``);
    - Vertex AI without them: the API key is a Vertex AI key (express mode,
      ``publishers/google/models/…``).
    """
    if not settings.GEMINI_USE_VERTEXAI:
        return {"vertexai": False, "api_key": settings.GEMINI_API_KEY}
    if settings.GOOGLE_CLOUD_PROJECT:
        return {
            "vertexai": True,
            "project": settings.GOOGLE_CLOUD_PROJECT,
            "location": settings.GOOGLE_CLOUD_LOCATION,
        }
    return {"vertexai": True, "api_key": settings.GEMINI_API_KEY}


def reset_client() -> None:
    """Forget the process's client, so the next call builds one from the current settings."""
    global _client_cache
    with _client_lock:
        _client_cache = None


# --- which configured models the provider serves ----------------------------------------------
# Seconds each model's question may take: check_engine's, and the worker's at start (which
# waits for it before taking tasks, so a network blip delays the cluster, never stops it).
PROBE_TIMEOUT = 10.0
WORKER_PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class ModelProbe:
    """The provider's answer about one configured model."""

    setting: str  # GEMINI_IMAGE_MODEL, VERTEX_TRYON_MODEL or GEMINI_TEXT_MODEL
    model: str
    served: bool
    status: int | None = None  # the HTTP status of a refusal; None when nothing answered
    detail: str = ""

    @property
    def outcome(self) -> str:
        """served; retired (404: the model is gone, change the setting); refused (400/401/403: the
        credentials or their access); busy (any other status: try again); silent (no answer)."""
        if self.served:
            return "served"
        if self.status is None:
            return "silent"
        if self.status == 404:
            return "retired"
        return "refused" if self.status in (400, 401, 403) else "busy"

    def __str__(self) -> str:
        if self.served:
            return f"{self.setting}={self.model}: served"
        if self.status is None:
            return f"{self.setting}={self.model}: no answer ({self.detail})"
        return f"{self.setting}={self.model}: NOT served (HTTP {self.status} {self.detail})"


def endpoint() -> str:
    """Where the engine's calls go, for people: the base URL, Vertex AI or the Gemini API."""
    if settings.GEMINI_BASE_URL:
        return settings.GEMINI_BASE_URL
    if settings.GEMINI_USE_VERTEXAI:
        where = f"project {settings.GOOGLE_CLOUD_PROJECT}, {settings.GOOGLE_CLOUD_LOCATION}"
        return f"Vertex AI ({where})" if settings.GOOGLE_CLOUD_PROJECT else "Vertex AI (express mode)"
    return "the Gemini API"


def probe_models(*, timeout: float = PROBE_TIMEOUT) -> list[ModelProbe]:
    """Ask the provider for each model the configured engine calls (``models.get``, through the engine's client).

    Never raises: a refusal is recorded with its HTTP status, anything else (no connection,
    no credentials) as no answer.
    """
    options = types.GetModelConfig(http_options=types.HttpOptions(timeout=max(1, int(timeout * 1000))))
    probes = []
    for setting, model in engine_models(settings.FITTING_ENGINE):
        try:
            get_client().models.get(model=model, config=options)
        except errors.APIError as exc:
            detail = _api_error_summary(exc).removeprefix(f"{exc.code} ")
            probes.append(ModelProbe(setting, model, served=False, status=exc.code, detail=detail))
        except Exception as exc:  # reported, never raised: this is a diagnosis
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            probes.append(ModelProbe(setting, model, served=False, detail=detail))
        else:
            probes.append(ModelProbe(setting, model, served=True))
    return probes


def log_model_probe() -> None:
    """Log the provider's answer for each configured model, once, when a worker node starts.

    It never refuses to start: a model that is not served fails its jobs with
    ENGINE_MODEL_UNAVAILABLE, and an unanswered probe may be a passing network blip.
    """
    try:
        probes = probe_models(timeout=WORKER_PROBE_TIMEOUT)
    except Exception:  # a bug here must not keep the cluster from starting
        logger.exception("Gemini model check failed")
        return
    finally:
        reset_client()  # made in the cluster's parent process: its workers build their own
    for probe in probes:
        if probe.outcome == "served":
            logger.info("Gemini model check via %s: %s", endpoint(), probe)
        elif probe.outcome == "retired":
            logger.error(
                "Gemini model check via %s: %s. Jobs will fail with ENGINE_MODEL_UNAVAILABLE until %s is changed.",
                endpoint(),
                probe,
                probe.setting,
            )
        elif probe.outcome == "refused":
            logger.error("Gemini model check via %s: %s. Check the credentials and their access.", endpoint(), probe)
        else:  # busy or silent: may be a passing blip
            logger.warning("Gemini model check via %s: %s", endpoint(), probe)


# --- the engine -----------------------------------------------------------------------------
class GeminiEngine:
    def __init__(self, prompt_version: str | None = None) -> None:
        # The prompts it speaks (``prompts.PROMPT_SETS``): a job's pinned version, or the default.
        self.prompt_version = prompt_version or prompts.DEFAULT_PROMPT_VERSION

    @property
    def identity(self) -> EngineIdentity:
        return gemini_identity(self.prompt_version)  # read at each call: the image model is a setting

    # The version whose message prompt ``write_message`` speaks (the try-on engine has its own).
    @property
    def message_prompt_version(self) -> str:
        return self.prompt_version

    def apply_garment(
        self,
        *,
        person: Image.Image,
        garment: Image.Image,
        category: str,
        canvas_size: tuple[int, int],
        timeout: float,
        keep_going: KeepGoing | None = None,
        seed: int | None = None,
    ) -> StepResult:
        """The image model's answer, as it came (its own size; the pipeline fits it to the canvas).

        ``seed`` goes to ``GenerateContentConfig.seed``: the quality gate's retries send a new one.
        """
        deadline = _now() + timeout
        contents = [
            types.Part.from_text(text=prompts.step_prompt(category, self.prompt_version)),
            _image_part(person),
            _image_part(garment),
            _canvas_part(_input_size(canvas_size)),
        ]
        model = self.identity.model
        config = types.GenerateContentConfig(response_modalities=["IMAGE"], seed=seed)
        if _takes_image_config(model):
            config.image_config = types.ImageConfig(aspect_ratio=nearest_aspect_ratio(canvas_size))
            if takes_image_size(model):
                config.image_config.image_size = image_size_for(canvas_size)
        response = _generate(
            model=model,
            setting="GEMINI_IMAGE_MODEL",
            contents=contents,
            config=config,
            deadline=deadline,
            keep_going=keep_going,
        )
        return StepResult(_read_image(response), usage=_usage(response))

    def write_message(self, *, outfit: Outfit, timeout: float, keep_going: KeepGoing | None = None) -> str | None:
        """The text model's message about the final image (the prompt version's words; no garment image is sent)."""
        prompt = prompts.message_prompt(
            tuple(garment.category for garment in outfit.garments), self.message_prompt_version
        )
        response = _generate(
            model=settings.GEMINI_TEXT_MODEL,
            setting="GEMINI_TEXT_MODEL",
            contents=[types.Part.from_text(text=prompt), _image_part(outfit.image)],
            config=types.GenerateContentConfig(),
            deadline=_now() + timeout,
            keep_going=keep_going,
        )
        return prompts.normalise_message(_text_of(response))


# --- one call, retried within the deadline --------------------------------------------------
def _generate(
    *,
    model: str,
    setting: str,
    contents: list,
    config: types.GenerateContentConfig,
    deadline: float,
    keep_going: KeepGoing | None = None,
) -> types.GenerateContentResponse:
    """Call ``generate_content``, retrying transient failures until ``deadline``.

    Before each retry (after its backoff) ``keep_going`` is asked: False raises StepAbandoned,
    so a job canceled while a call failed pays for no second one.

    Raises as ``call_with_retries`` does.
    """
    # Nothing may send a second request behind our back, outside the deadline.
    config = config.model_copy(
        update={
            "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
            "automatic_continuation": False,
        }
    )
    client = get_client()

    def call(http_options: types.HttpOptions) -> types.GenerateContentResponse:
        per_attempt = config.model_copy(update={"http_options": http_options})
        return client.models.generate_content(model=model, contents=contents, config=per_attempt)

    return call_with_retries(call, model=model, setting=setting, deadline=deadline, keep_going=keep_going)


Answer = TypeVar("Answer")


def call_with_retries(
    call: Callable[[types.HttpOptions], Answer],
    *,
    model: str,
    setting: str,
    deadline: float,
    keep_going: KeepGoing | None = None,
) -> Answer:
    """Make one provider call, ``call(http_options)``, retrying transient failures until ``deadline``.

    Every Google engine's calls go through here (``generate_content``, ``recontext_image``):
    each attempt gets the time left as its HTTP timeout; before each retry (after its
    backoff) ``keep_going`` is asked, and False raises StepAbandoned, so a job canceled while
    a call failed pays for no second one.

    Raises DeadlineExceeded when the deadline has passed, EngineUnavailableError when
    transient failures persist, EngineModelUnavailableError for a 404 (the model, named by
    the setting ``setting``, is not served), EngineRejectedError for any other HTTP error.
    """
    if deadline - _now() <= 0:
        raise DeadlineExceeded()
    sent = 0

    def attempt() -> Answer:
        nonlocal sent
        if sent and keep_going is not None and not keep_going():
            raise StepAbandoned()
        sent += 1
        return call(types.HttpOptions(timeout=_ms_left(deadline)))

    try:
        return _retrying(deadline)(attempt)
    except errors.APIError as exc:
        summary = _api_error_summary(exc)
        if exc.code == 404:  # a shut-down (or misspelt) model: retrying cannot help
            raise EngineModelUnavailableError(
                f"The model {model} is not served ({summary}). Set {setting} to a current model "
                "(python manage.py check_engine asks the provider)."
            ) from exc
        if exc.code not in TRANSIENT_STATUS:
            raise EngineRejectedError(f"The image engine rejected the request ({summary}).") from exc
        if deadline - _now() <= 0:
            raise DeadlineExceeded() from exc
        raise EngineUnavailableError(f"The image engine is unavailable ({summary}).") from exc
    except _TRANSPORT_ERRORS as exc:
        # Each attempt's timeout is the time left, so a timeout means the deadline passed.
        if isinstance(exc, _TIMEOUT_ERRORS) or deadline - _now() <= 0:
            raise DeadlineExceeded() from exc
        raise EngineUnavailableError(f"The image engine could not be reached ({type(exc).__name__}).") from exc
    except (ServiceError, StepAbandoned):
        raise
    except Exception as exc:  # a malformed answer the SDK could not parse, and the like
        logger.exception("Unexpected failure calling %s", model)
        raise EngineError(f"The image engine failed ({type(exc).__name__}).") from exc


def _retrying(deadline: float) -> tenacity.Retrying:
    initial = float(getattr(settings, "GEMINI_RETRY_INITIAL_DELAY", 1.0))
    backoff = tenacity.wait_exponential_jitter(
        initial=initial,
        max=float(getattr(settings, "GEMINI_RETRY_MAX_DELAY", 8.0)),
        exp_base=2,
        jitter=initial,
    )

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(backoff(state), _server_retry_delay(exc))

    def out_of_time(state: tenacity.RetryCallState) -> bool:
        # tenacity computes the next sleep before asking to stop, so this never sleeps
        # into (or past) the deadline.
        return _now() + state.upcoming_sleep + MIN_ATTEMPT_SECONDS >= deadline

    return tenacity.Retrying(
        sleep=_sleep,
        retry=tenacity.retry_if_exception(_is_transient),
        wait=wait,
        stop=tenacity.stop_after_attempt(int(getattr(settings, "GEMINI_RETRY_ATTEMPTS", 5))) | out_of_time,
        before_sleep=_log_retry,
        reraise=True,
    )


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, errors.APIError):
        return exc.code in TRANSIENT_STATUS
    return isinstance(exc, _TRANSPORT_ERRORS)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    logger.info(
        "Gemini attempt %d failed (%s); retrying in %.2fs",
        state.attempt_number,
        _api_error_summary(exc) if isinstance(exc, errors.APIError) else type(exc).__name__,
        state.upcoming_sleep,
    )


def _ms_left(deadline: float) -> int:
    # The SDK reads a timeout of 0 as "no timeout": at least 1 ms.
    return max(1, int((deadline - _now()) * 1000))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s?\s*$")


def _server_retry_delay(exc: BaseException | None) -> float:
    """The wait a 429/503 asks for: google.rpc.RetryInfo's retryDelay, or Retry-After."""
    if not isinstance(exc, errors.APIError):
        return 0.0
    details = exc.details.get("error", exc.details) if isinstance(exc.details, dict) else {}
    for detail in details.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    headers = getattr(exc.response, "headers", None) or {}
    match = _DURATION.match(str(headers.get("retry-after", "")))
    return float(match.group(1)) if match else 0.0


def _api_error_summary(exc: errors.APIError) -> str:
    message = " ".join(str(exc.message or "").split())
    if len(message) > 200:
        message = message[:200] + "…"
    return " ".join(part for part in (str(exc.code), exc.status or "", message) if part)


# --- requests and responses -----------------------------------------------------------------
def _input_size(size: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, MAX_INPUT_SIDE / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


# The aspect ratios the image models take in ``image_config`` (width:height).
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
# Image models that take ``image_config`` (Gemini 2.5 Flash Image and the Gemini 3 image
# models); an older model would reject the field, so it is not sent to them.
_IMAGE_CONFIG_MODELS = re.compile(r"^(?:.*/)?(?:gemini-2\.5-flash-image|gemini-3[\w.-]*-image)")


def _takes_image_config(model: str) -> bool:
    return bool(_IMAGE_CONFIG_MODELS.match(model))


def takes_image_size(model: str) -> bool:
    """Whether ``model`` takes ``image_config.image_size`` (the model table says so; older models reject it)."""
    known = known_model(model)
    return bool(known and known.takes_image_size)


def image_size_for(canvas_size: tuple[int, int]) -> str:
    """The output resolution to ask for: "2K" when the canvas's long side is over 1024 px, else "1K".

    Without it a 3.x image model answers at about 1 megapixel, and a 2048 px photo's steps
    would be scaled up from that.
    """
    return "2K" if max(canvas_size) > 1024 else "1K"


def nearest_aspect_ratio(size: tuple[int, int]) -> str:
    """The supported aspect ratio nearest to ``size``'s (compared on a log scale, so 2:1 and
    1:2 are equally far from 1:1), sent with the blank canvas of the same size."""
    target = math.log(size[0] / size[1])

    def distance(ratio: str) -> float:
        width, height = (int(part) for part in ratio.split(":"))
        return abs(math.log(width / height) - target)

    return min(ASPECT_RATIOS, key=distance)


@functools.lru_cache(maxsize=16)
def _canvas_part(size: tuple[int, int]) -> types.Part:
    """The blank canvas, encoded once per size: every step of every job sends the same one."""
    return types.Part.from_bytes(data=images.encode_png(images.blank_canvas(size)), mime_type="image/png")


def _image_part(image: Image.Image, *, png: bool = False) -> types.Part:
    """An inline image: JPEG for photos (a fraction of PNG's size), PNG when alpha matters."""
    data, mime_type = encode_input(image, png=png)
    return types.Part.from_bytes(data=data, mime_type=mime_type)


def encode_input(image: Image.Image, *, png: bool = False) -> tuple[bytes, str]:
    """An input image as sent (bytes, MIME type): at most MAX_INPUT_SIDE; JPEG, or PNG when alpha matters."""
    if image.size != _input_size(image.size):
        image = image.resize(_input_size(image.size), Image.Resampling.LANCZOS)
    if png or image.mode in ("RGBA", "LA", "P"):
        return images.encode_png(image), "image/png"
    stored = images.result_bytes(image)  # a step's image: sent as it was stored, not encoded again
    if stored is not None:
        return stored, f"image/{images.RESULT_FORMAT.lower()}"
    buffer = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), "image/jpeg"


def _enum_name(value: object) -> str:
    return str(getattr(value, "value", value) or "")


def _read_image(response: types.GenerateContentResponse) -> Image.Image:
    feedback = response.prompt_feedback
    if feedback and feedback.block_reason:
        reason = _enum_name(feedback.block_reason)
        raise EngineBlockedError(f"The image engine blocked the request ({reason}).")
    if not response.candidates:
        raise EngineNoImageError("The image engine answered without a candidate.")
    candidate = response.candidates[0]
    finish = _enum_name(candidate.finish_reason)
    if finish in BLOCK_FINISH_REASONS:
        raise EngineBlockedError(f"The image engine refused to make the image ({finish}).")
    parts = (candidate.content.parts if candidate.content else None) or []
    data = next(
        (
            part.inline_data.data
            for part in parts
            if not part.thought  # a thinking model's draft images are not the answer
            and part.inline_data
            and part.inline_data.data
            and (part.inline_data.mime_type or "").startswith("image/")
        ),
        None,
    )
    if data is None:
        text = " ".join(" ".join(part.text for part in parts if part.text and not part.thought).split())
        detail = f"{finish or 'no finish reason'}" + (f": {text[:120]}" if text else "")
        raise EngineNoImageError(f"The image engine answered without an image ({detail}).")
    try:
        return images.decode(data)
    except ServiceError as exc:
        raise EngineBadImageError() from exc


def _text_of(response: types.GenerateContentResponse) -> str | None:
    if not response.candidates or not response.candidates[0].content:
        return None
    parts = response.candidates[0].content.parts or []
    return " ".join(part.text for part in parts if part.text and not part.thought) or None


def _usage(response: types.GenerateContentResponse) -> dict[str, int]:
    metadata = response.usage_metadata
    if metadata is None:
        return {}
    counts = {
        "prompt_tokens": metadata.prompt_token_count,
        "candidates_tokens": metadata.candidates_token_count,
        "total_tokens": metadata.total_token_count,
    }
    return {name: count for name, count in counts.items() if count is not None}


__all__ = [
    "GeminiEngine",
    "ModelProbe",
    "call_with_retries",
    "encode_input",
    "get_client",
    "log_model_probe",
    "probe_models",
    "reset_client",
]
