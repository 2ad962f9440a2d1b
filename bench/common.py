"""Shared pieces: result rows, the sample photo, percentiles, process memory, fake Gemini."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo" / "samples"
PHOTO_SIZE = (1024, 1536)
# What Gemini's image model answers for a 2:3 request (about one megapixel).
ENGINE_OUTPUT_SIZE = (832, 1248)
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ROWS_MARK = "BENCH_ROWS "
FAILED_MARK = "BENCH_FAILED "

# What would stand in for the work a benchmark measures, turned off: the whole-result cache and
# step reuse (an identical request would be served without the engine), the daily quota and the
# request rates (answers of 429 instead of work). A benchmark of one of them turns it back on.
NO_STAND_INS = {
    "FITTING_RESULT_CACHE": "false",
    "FITTING_STEP_CACHE": "false",
    "FITTING_DAILY_QUOTA": "0",
    "FITTING_START_RATE": "100000/second",
    "UPLOAD_RATE": "100000/second",
}


@dataclass
class Row:
    benchmark: str
    figure: str
    target: str = "—"
    met: str = "info"  # "yes", "no", "info", or a reason it could not run


def emit(rows: list[Row]) -> None:
    """The subprocess's result for bench.__main__: one marked JSON line on stdout."""
    print(ROWS_MARK + json.dumps([asdict(row) for row in rows]), flush=True)


class BenchFailed(Exception):
    """The work a benchmark measures was not done (refused, served from a cache, failed): no figure."""


def require(condition: bool, what: str) -> None:
    """Fail the benchmark loudly, instead of printing a figure of something else, unless ``condition``."""
    if not condition:
        raise BenchFailed(what)


def answers(statuses: dict[int, int]) -> str:
    """The answers by status code, most frequent first: "202×1203, 429×12"."""
    return ", ".join(f"{code}×{count}" for code, count in sorted(statuses.items(), key=lambda kv: (-kv[1], kv[0])))


def main(run) -> None:
    """A benchmark's ``__main__``: its rows for bench.__main__, or a marked failure and exit 1."""
    try:
        rows = run()
    except BenchFailed as exc:
        log(f"FAILED: {exc}")
        print(FAILED_MARK + str(exc), flush=True)
        sys.exit(1)
    emit(rows)


def log(*parts: object) -> None:
    """Details go to stderr; stdout carries only the table."""
    print(*parts, file=sys.stderr, flush=True)


def met(ok: bool) -> str:
    return "yes" if ok else "no"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- images -------------------------------------------------------------------------------
def make_photo(size: tuple[int, int] = PHOTO_SIZE, seed: int = 7) -> bytes:
    """A photo-like JPEG: smooth gradients, a figure, and sensor-like noise.

    Noise matters: a flat synthetic image encodes and decodes several times faster than a
    real photo, which would flatter every JPEG/PNG step of the pipeline.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([120 + 80 * x / w, 110 + 60 * y / h, 150 - 50 * (x + y) / (w + h)], axis=-1)
    image = Image.fromarray(base.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((w * 0.40, h * 0.08, w * 0.60, h * 0.24), fill=(224, 188, 160))  # head
    draw.rectangle((w * 0.32, h * 0.24, w * 0.68, h * 0.58), fill=(200, 60, 60))  # torso
    draw.rectangle((w * 0.36, h * 0.58, w * 0.64, h * 0.95), fill=(50, 60, 110))  # legs
    for _ in range(40):  # background texture
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 120)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=3)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    pixels = np.asarray(image).astype(np.int16) + rng.normal(0, 9, (h, w, 3)).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


# --- process memory (no psutil needed) ------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[tuple[int, int]]:
    """(pid, depth) of ``pid`` and all its descendants."""
    children = _children_map()
    out, stack = [], [(pid, 0)]
    while stack:
        current, depth = stack.pop()
        out.append((current, depth))
        stack.extend((child, depth + 1) for child in children.get(current, []))
    return out


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, and PSS/USS from smaps_rollup (shared pages of forked workers split fairly)."""
    result = {"rss": 0, "pss": 0, "uss": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                result["rss"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                result["pss"] = int(rest.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                result["uss"] += int(rest.split()[0])
    except OSError:
        pass
    return result


# --- a fake Gemini that costs (almost) nothing per call ------------------------------------
def cheap_fake_gemini(answer_size: tuple[int, int] = ENGINE_OUTPUT_SIZE):
    """tests.fakegemini.FakeGemini, with its per-call image work removed.

    The stock fake decodes every request image and PNG-encodes its answer on each call
    (~0.3 s of CPU in the benchmark process per call at these sizes). Capacity and latency
    runs share two cores with the app, so this fake answers ``ok()`` with one image
    encoded once, and does not decode request images. Delays and scripts are unchanged.
    """
    from PIL import Image

    import tests.fakegemini as fg

    photo = Image.open(io.BytesIO(make_photo())).resize(answer_size)
    buffer = io.BytesIO()
    photo.save(buffer, "PNG", compress_level=6)
    encoded = base64.b64encode(buffer.getvalue()).decode()

    good: dict[tuple, str] = {}  # answer_mode("good") answers by (person, garment, category)

    class CheapFake(fg.FakeGemini):
        def _respond(self, request, behaviour):
            if behaviour.kind == "ok":
                part = {"inlineData": {"mimeType": "image/png", "data": encoded}}
                return 200, fg._answer(request, [part], "STOP", behaviour.usage)
            if behaviour.kind == "mode" and behaviour.mode == "good":
                part = {"inlineData": {"mimeType": "image/png", "data": self._good(request, behaviour.category)}}
                return 200, fg._answer(request, [part], "STOP", behaviour.usage)
            return super()._respond(request, behaviour)

        def _good(self, request, category: str) -> str:
            """A good answer (tests.quality_modes) drawn at ``answer_size``, made once per request images.

            The seed is ignored: jobs of the same photo and garments send the same bytes, so after
            the first job every answer comes from here at no cost, and the quality gate passes it.
            """
            blobs = [
                part.get("inlineData") or part.get("inline_data")
                for content in request.body.get("contents") or []
                for part in content.get("parts") or []
            ]
            data = [blob["data"] for blob in blobs if blob][:2]
            key = (*(hashlib.sha256(d.encode()).hexdigest() for d in data), category)
            if key not in good:
                from tests.quality_modes import answer

                person, garment = (Image.open(io.BytesIO(fg._b64decode(d))) for d in data)
                made = answer("good", person.convert("RGB"), garment, category).resize(answer_size)
                out = io.BytesIO()
                made.save(out, "PNG", compress_level=6)
                good[key] = base64.b64encode(out.getvalue()).decode()
            return good[key]

    fake = CheapFake(decode_images=False)
    fake._server.socket.listen(256)  # 32 workers connect at once; the default backlog is 5
    return fake


# --- the app's real processes --------------------------------------------------------------
def stack(tmp: Path, **env: str):
    """tests.e2e.Stack with the benchmark defaults: quiet logs, no stand-ins (NO_STAND_INS)."""
    from tests.e2e import Stack

    defaults = {"LOG_LEVEL": "WARNING", **NO_STAND_INS}
    return Stack(tmp, **{**defaults, **env})


def upload_photo(client, data: bytes) -> str:
    response = client.post("/api/users/me/photos", files={"image": ("photo.jpg", data, "image/jpeg")})
    assert response.status_code == 201, response.text
    return response.json()["url"]


def item_ids(client) -> dict[str, int]:
    items = client.get("/api/items").json()
    items = items["results"] if isinstance(items, dict) else items
    found: dict[str, int] = {}
    for item in items:
        found.setdefault(item["category"], item["id"])
    return found


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
