"""A fake Gemini REST server for tests: the real google-genai client talks to it.

It answers ``POST /{version}/models/{model}:generateContent`` the way the Gemini API
does (camelCase JSON, base64 inline data, ``{"error": {...}}`` bodies on failure) and
records every request, with its text and image parts decoded, for tests to assert on.
Vertex AI's paths are answered the same way:
``/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent``
(application default credentials) and ``/{version}/publishers/google/models/{model}:generateContent``
(express mode, an API key). ``GET /{version}/models/{model}`` (and the Vertex AI paths without
``:generateContent``), what ``client.models.get`` asks, answers the model's description for
the models it serves. A model the test ``retire()``s is answered as the real API answers a
shut-down model: 404 ``NOT_FOUND``, "models/<name> is not found for API version v1beta, or is
not supported for generateContent." (its generateContent calls are recorded like any other,
without taking a scripted behaviour). ``POST …/models/{model}:predict`` (Vertex AI only: the Virtual Try-On model's
``recontext_image``) is answered as Vertex AI does, ``{"predictions": [{"bytesBase64Encoded",
"mimeType"}]}`` or ``[{"raiFilteredReason"}]`` for a filtered image, after checking the request's
shape: ``instances[0].personImage.image`` and ``instances[0].productImages[].image`` (one product,
as the model takes), ``parameters.sampleCount`` 1 to 4 and ``parameters.seed`` a uint32 when sent.
A request of another shape is a 400 and lands in ``errors``. ``POST /token`` stands in for
Google's OAuth token endpoint, so
stand-in application default credentials (an ``authorized_user`` file whose ``token_uri``
is ``fake.token_url``) get an access token without calling out.

Each call takes the next scripted behaviour from a queue, one queue for image calls
(``responseModalities`` includes IMAGE, and every ``:predict``) and one for text calls; an
empty queue answers ``ok()`` or ``text()``. On ``:predict``, ``block(reason)`` is a prediction
with ``raiFilteredReason``, ``filtered(count, reason)`` that many of the ``sampleCount``
predictions filtered and the rest images, ``text_only()`` an answer without predictions:

    fake.script_image(fail(503), ok())
    fake.script_text(delay(5))
    fake.script_image(ok(), hold(gate))  # the 2nd call waits until the test sets ``gate``

``ok()`` answers with the request's first image (the person), brought to ``size`` if
given, with a coloured marker block stamped for this call: block ``k`` (the k-th image
call, from 0) is at ``marker_box(k, size)`` and coloured ``marker_color(k)``. A step that
received step k's output therefore still shows marker ``k``.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from PIL import Image, ImageDraw

DEFAULT_MESSAGE = "오늘 코디 정말 잘 어울려요! ✨ 자신 있게 입어보세요."
_PATH = re.compile(
    r"^/(?P<version>[^/]+)/"
    r"(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"(?:publishers/(?P<publisher>[^/]+)/)?"
    r"models/(?P<model>[^/:]+):(?P<action>[A-Za-z]+)$"
)
_MODEL_PATH = re.compile(
    r"^/(?P<version>[^/]+)/"
    r"(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"(?:publishers/(?P<publisher>[^/]+)/)?"
    r"models/(?P<model>[^/:]+)$"
)
ACCESS_TOKEN = "fake-access-token"
_MARKER_COLORS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 160, 0), (160, 0, 160), (0, 160, 160)]


def marker_color(k: int) -> tuple[int, int, int]:
    return _MARKER_COLORS[k % len(_MARKER_COLORS)]


def marker_box(k: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where ``ok()`` stamps call ``k``'s marker: the k-th eighth of the top band."""
    w, h = size
    return (k % 8) * w // 8, 0, (k % 8 + 1) * w // 8 - 1, h // 8


# --- behaviours ---------------------------------------------------------------------------
@dataclass
class Behaviour:
    kind: str
    status: int = 200
    delay: float = 0.0
    size: tuple[int, int] | None = None
    text: str | None = None
    reason: str | None = None
    message: str | None = None
    retry_delay: str | None = None
    then: Behaviour | None = None
    usage: dict[str, int] | None = None
    gate: threading.Event | None = None
    mode: str | None = None  # answer_mode(): a tests/quality_modes.py answer
    count: int = 0  # filtered(): how many predictions the safety filter took
    category: str | None = None


def ok(size: tuple[int, int] | None = None, *, text: str | None = None, usage: dict | None = None) -> Behaviour:
    """An image derived from the request's first image (``text`` puts a text part first)."""
    return Behaviour("ok", size=size, text=text, usage=usage)


def answer_mode(mode: str, category: str = "top") -> Behaviour:
    """An answer of ``tests.quality_modes`` (good, unchanged, product, face_replaced, …).

    Made from the request's person (its first image) and garment (its second) for ``category``,
    with the request's ``generationConfig.seed`` (0 without one) as the round trip's seed.
    """
    return Behaviour("mode", mode=mode, category=category)


def delay(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Wait, then behave as ``then`` (the default answer when None)."""
    return Behaviour("delay", delay=seconds, then=then)


def hold(gate: threading.Event, then: Behaviour | None = None) -> Behaviour:
    """Wait until the test sets ``gate``, then behave as ``then`` (the default answer when None).

    A call held in flight for as long as a test needs, without a wall-clock delay.
    """
    return Behaviour("hold", gate=gate, then=then)


def fail(status: int, message: str | None = None, *, retry_delay: str | None = None) -> Behaviour:
    """An HTTP error with Google's error body; ``retry_delay`` adds a RetryInfo ("2s")."""
    return Behaviour("fail", status=status, message=message, retry_delay=retry_delay)


def block(finish_reason: str = "IMAGE_SAFETY") -> Behaviour:
    """A candidate without content, stopped for ``finish_reason``."""
    return Behaviour("block", reason=finish_reason)


def block_prompt(reason: str = "SAFETY") -> Behaviour:
    """No candidate at all: ``promptFeedback.blockReason``."""
    return Behaviour("block_prompt", reason=reason)


def filtered(count: int, reason: str = "The image was filtered by the safety filter.") -> Behaviour:
    """On ``:predict``: ``count`` of the ``sampleCount`` predictions filtered (``raiFilteredReason``).

    The others are images, as ``ok()`` makes them.
    """
    return Behaviour("filtered", reason=reason, count=count)


def text_only(text: str = "I can't make that image.", finish_reason: str = "STOP") -> Behaviour:
    return Behaviour("text_only", text=text, reason=finish_reason)


def bad_image() -> Behaviour:
    """An inline part that says image/png but is not an image."""
    return Behaviour("bad_image")


def text(reply: str = DEFAULT_MESSAGE, *, usage: dict | None = None) -> Behaviour:
    """A text model's answer (``usage``: its usageMetadata, the image answer's by default)."""
    return Behaviour("text", text=reply, usage=usage)


def disconnect() -> Behaviour:
    """Close the connection without answering."""
    return Behaviour("disconnect")


# --- what was received ----------------------------------------------------------------------
@dataclass
class RecordedRequest:
    method: str
    path: str
    version: str | None
    model: str | None
    action: str | None
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]
    texts: list[str] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    mime_types: list[str] = field(default_factory=list)
    # Vertex AI's paths: projects/{project}/locations/{location}/publishers/{publisher}/models/…
    project: str | None = None
    location: str | None = None
    publisher: str | None = None
    # :predict (the try-on model): its decoded person and product images; ``images`` holds both.
    person_image: Image.Image | None = None
    product_images: list[Image.Image] = field(default_factory=list)

    @property
    def generation_config(self) -> dict[str, Any]:
        return self.body.get("generationConfig") or {}

    @property
    def parameters(self) -> dict[str, Any]:
        """A :predict request's ``parameters`` (sampleCount, seed, addWatermark, …)."""
        return self.body.get("parameters") or {}

    @property
    def wants_image(self) -> bool:
        return self.action == "predict" or "IMAGE" in (self.generation_config.get("responseModalities") or [])


def _decode_parts(body: dict[str, Any], *, images: bool = True) -> tuple[list[str], list[Image.Image], list[str]]:
    texts, decoded, mimes = [], [], []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            if "text" in part:
                texts.append(part["text"])
            # The API reads proto JSON, which takes camelCase and snake_case names alike
            # (the SDK sends ``inlineData: {data, mime_type}``).
            blob = part.get("inlineData") or part.get("inline_data")
            if blob:
                mimes.append(blob.get("mimeType") or blob.get("mime_type") or "")
                if not images:
                    continue
                image = Image.open(io.BytesIO(_b64decode(blob["data"])))
                image.load()
                decoded.append(image)
    return texts, decoded, mimes


def _decode_image(blob: Any, where: str) -> Image.Image:
    if not isinstance(blob, dict) or not blob.get("bytesBase64Encoded"):
        raise ValueError(f"{where} must be an image with bytesBase64Encoded")
    if not str(blob.get("mimeType") or "").startswith("image/"):
        raise ValueError(f"{where}.mimeType must be an image type")
    image = Image.open(io.BytesIO(_b64decode(blob["bytesBase64Encoded"])))
    image.load()
    return image


def _decode_predict(body: dict[str, Any]) -> tuple[Image.Image, list[Image.Image]]:
    """The person and product images of a Virtual Try-On request; ValueError for another shape."""
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1:
        raise ValueError("instances must hold exactly one instance")
    instance = instances[0]
    person = _decode_image((instance.get("personImage") or {}).get("image"), "instances[0].personImage.image")
    products = instance.get("productImages")
    if not isinstance(products, list) or len(products) != 1:
        raise ValueError("instances[0].productImages must hold exactly one product image")
    garments = [
        _decode_image((p or {}).get("image"), f"instances[0].productImages[{i}].image") for i, p in enumerate(products)
    ]
    parameters = body.get("parameters") or {}
    count = parameters.get("sampleCount", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 4:
        raise ValueError(f"parameters.sampleCount must be an integer from 1 to 4, not {count!r}")
    seed = parameters.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32):
        raise ValueError(f"parameters.seed must be an unsigned 32-bit integer, not {seed!r}")
    return person, garments


def _b64decode(data: str) -> bytes:
    """The API accepts standard and URL-safe base64 (the SDK sends URL-safe)."""
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4))


# --- the server -----------------------------------------------------------------------------
class FakeGemini:
    def __init__(self, port: int = 0, *, decode_images: bool = True) -> None:
        # decode_images=False: record only texts and mime types (the benchmarks' cheap fake).
        self.decode_images = decode_images
        self.requests: list[RecordedRequest] = []
        self.outputs: list[Image.Image] = []  # images answered by ok(), in order
        self.errors: list[str] = []  # requests the fake could not read or answer (test bugs)
        self.token_requests: list[dict[str, str]] = []  # form fields of each POST /token
        self.model_gets: list[str] = []  # paths of each GET models/<name> (client.models.get)
        self.retired: set[str] = set()  # models answered 404 NOT_FOUND, as shut-down ones are
        self.model_get_error: tuple[int, str] | None = None  # (status, message) answered to every GET models/<name>
        # Called with each RecordedRequest in the server's thread, before it is answered.
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self._image_script: deque[Behaviour] = deque()
        self._text_script: deque[Behaviour] = deque()
        self._image_calls = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, client_address: None  # client hung up
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def start(self) -> FakeGemini:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed answers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def retire(self, *models: str) -> None:
        """Answer ``models`` as the real API answers a shut-down model (404 NOT_FOUND)."""
        self.retired.update(models)

    def script_image(self, *behaviours: Behaviour) -> None:
        self._image_script.extend(behaviours)

    def script_text(self, *behaviours: Behaviour) -> None:
        self._text_script.extend(behaviours)

    @property
    def image_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.wants_image]

    @property
    def text_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if not r.wants_image]

    # called by the handler
    def _record(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            script = self._image_script if request.wants_image else self._text_script
            if script:
                return script.popleft()
            return ok() if request.wants_image else text()

    def _respond(self, request: RecordedRequest, behaviour: Behaviour) -> tuple[int, dict | None]:
        """The status and JSON body for ``behaviour``; None means hang up."""
        if request.action == "predict" and behaviour.kind in (
            "ok",
            "block",
            "filtered",
            "text_only",
            "text",
            "bad_image",
        ):
            return 200, self._predictions(request, behaviour)
        if behaviour.kind == "delay":
            if self._stopping.wait(behaviour.delay):
                return 503, _error_body(503, "shutting down", None)
            then = behaviour.then or (ok() if request.wants_image else text())
            return self._respond(request, then)
        if behaviour.kind == "hold":
            while not behaviour.gate.wait(0.05):
                if self._stopping.is_set():
                    return 503, _error_body(503, "shutting down", None)
            then = behaviour.then or (ok() if request.wants_image else text())
            return self._respond(request, then)
        if behaviour.kind == "disconnect":
            return 0, None
        if behaviour.kind == "fail":
            return behaviour.status, _error_body(behaviour.status, behaviour.message, behaviour.retry_delay)
        if behaviour.kind == "block_prompt":
            return 200, {
                "promptFeedback": {"blockReason": behaviour.reason},
                "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
                "modelVersion": request.model,
            }
        if behaviour.kind == "block":
            return 200, _answer(request, [], behaviour.reason, None)
        if behaviour.kind in ("text_only", "text"):
            return 200, _answer(request, [{"text": behaviour.text}], behaviour.reason or "STOP", behaviour.usage)
        if behaviour.kind == "bad_image":
            junk = base64.b64encode(b"definitely not a PNG").decode()
            return 200, _answer(request, [{"inlineData": {"mimeType": "image/png", "data": junk}}], "STOP", None)
        if behaviour.kind in ("ok", "mode"):
            if behaviour.kind == "mode":
                image = self._mode_image(request, behaviour.mode, behaviour.category)
            else:
                image = self._make_image(request, behaviour.size)
            buffer = io.BytesIO()
            image.save(buffer, "PNG")
            parts = [{"text": behaviour.text}] if behaviour.text else []
            parts.append(
                {
                    "inlineData": {
                        "mimeType": "image/png",
                        "data": base64.b64encode(buffer.getvalue()).decode(),
                    }
                }
            )
            return 200, _answer(request, parts, "STOP", behaviour.usage)
        raise ValueError(f"unknown behaviour {behaviour.kind}")

    def _mode_image(self, request: RecordedRequest, mode: str, category: str) -> Image.Image:
        from tests.quality_modes import answer  # OpenCV and the local engine: only when asked

        person, garment = request.images[0].convert("RGB"), request.images[1]
        seed = int(request.generation_config.get("seed") or 0)
        image = answer(mode, person, garment, category, seed=seed % 1000)
        with self._lock:
            self._image_calls += 1
            self.outputs.append(image)
        return image

    def _predictions(self, request: RecordedRequest, behaviour: Behaviour) -> dict:
        """Vertex AI's answer to a :predict call, one prediction per ``sampleCount``."""
        if behaviour.kind in ("text", "text_only"):
            return {}  # nothing made, nothing said
        if behaviour.kind == "block":
            return {"predictions": [{"raiFilteredReason": behaviour.reason}]}
        if behaviour.kind == "bad_image":
            junk = base64.b64encode(b"definitely not a PNG").decode()
            return {"predictions": [{"bytesBase64Encoded": junk, "mimeType": "image/png"}]}
        count = request.parameters.get("sampleCount", 1)
        taken = min(behaviour.count, count) if behaviour.kind == "filtered" else 0
        predictions = []
        for _ in range(count - taken):
            buffer = io.BytesIO()
            self._make_image(request, behaviour.size).save(buffer, "PNG")
            predictions.append(
                {"bytesBase64Encoded": base64.b64encode(buffer.getvalue()).decode(), "mimeType": "image/png"}
            )
        predictions += [{"raiFilteredReason": behaviour.reason}] * taken
        return {"predictions": predictions}

    def _make_image(self, request: RecordedRequest, size: tuple[int, int] | None) -> Image.Image:
        with self._lock:
            k = self._image_calls
            self._image_calls += 1
        source = request.images[0].convert("RGB") if request.images else Image.new("RGB", (64, 64), "grey")
        image = source.resize(size) if size else source.copy()
        ImageDraw.Draw(image).rectangle(marker_box(k, image.size), fill=marker_color(k))
        with self._lock:
            self.outputs.append(image)
        return image


def _error_body(status: int, message: str | None, retry_delay: str | None) -> dict:
    names = {
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        408: "DEADLINE_EXCEEDED",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }
    error: dict[str, Any] = {
        "code": status,
        "message": message or f"fake error {status}",
        "status": names.get(status, "UNKNOWN"),
    }
    if retry_delay:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]
    return {"error": error}


def _not_found_body(model: str, version: str | None) -> dict:
    """What the Gemini API answers for a model it does not serve (shut down, or never existed)."""
    message = (
        f"models/{model} is not found for API version {version or 'v1beta'}, or is not supported for generateContent."
    )
    return {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}


def _answer(request: RecordedRequest, parts: list[dict], finish_reason: str, usage: dict | None) -> dict:
    candidate: dict[str, Any] = {"finishReason": finish_reason, "index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    usage = usage or {"promptTokenCount": 1290, "candidatesTokenCount": 1290, "totalTokenCount": 2580}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": request.model,
        "responseId": f"fake-{len(request.path)}",
    }


def _handler_for(fake: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?")[0] == "/token":  # OAuth 2.0 refresh (form-encoded)
                fake.token_requests.append(dict(parse_qsl(raw.decode())))
                self._send(200, {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
                return
            match = _PATH.match(self.path.split("?")[0])
            person, products = None, []
            try:
                body = json.loads(raw or b"{}")
                texts, decoded, mimes = _decode_parts(body, images=fake.decode_images)
                if match and match["action"] == "predict":
                    person, products = _decode_predict(body)
                    decoded = [person, *products]
            except Exception as exc:  # as the real API does with a broken request
                fake.errors.append(f"{type(exc).__name__}: {exc}")
                self._send(400, _error_body(400, f"fake server cannot read the request: {exc}", None))
                return
            request = RecordedRequest(
                method="POST",
                path=self.path,
                version=match["version"] if match else None,
                model=match["model"] if match else None,
                action=match["action"] if match else None,
                project=match["project"] if match else None,
                location=match["location"] if match else None,
                publisher=match["publisher"] if match else None,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                texts=texts,
                images=decoded,
                mime_types=mimes,
                person_image=person,
                product_images=products,
            )
            # :predict is Vertex AI's only (the Gemini API has no try-on model).
            vertex = bool(match and (match["publisher"] or match["project"]))
            if not match or not (match["action"] == "generateContent" or (match["action"] == "predict" and vertex)):
                self._send(404, _error_body(404, f"no route {self.path}", None))
                return
            if request.model in fake.retired:
                with fake._lock:
                    fake.requests.append(request)
                self._send(404, _not_found_body(request.model, request.version))
                return
            behaviour = fake._record(request)
            try:
                if fake.on_request is not None:
                    fake.on_request(request)
                status, payload = fake._respond(request, behaviour)
            except Exception as exc:  # a bug in a test's hook or script: make it visible
                fake.errors.append(f"{type(exc).__name__}: {exc}")
                status, payload = 400, _error_body(400, f"fake server error: {exc}", None)
            if payload is None:
                self.close_connection = True
                self.connection.close()
                return
            self._send(status, payload)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            match = _MODEL_PATH.match(path)
            if not match:
                self._send(404, _error_body(404, f"no route {self.path}", None))
                return
            fake.model_gets.append(path)
            model = match["model"]
            if fake.model_get_error is not None:
                status, message = fake.model_get_error
                self._send(status, _error_body(status, message, None))
                return
            if model in fake.retired:
                self._send(404, _not_found_body(model, match["version"]))
                return
            name = f"publishers/google/models/{model}" if match["publisher"] or match["project"] else f"models/{model}"
            self._send(
                200,
                {
                    "name": name,
                    "version": "001",
                    "displayName": model,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                },
            )

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


if __name__ == "__main__":
    # A fake Gemini to try the gemini engine by hand: python -m tests.fakegemini [PORT]
    import sys
    import time

    fake = FakeGemini(int(sys.argv[1]) if len(sys.argv) > 1 else 8765).start()
    print(f"fake Gemini at {fake.base_url} (every image call answers ok(); Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
