"""Answers an image model might give for one fitting step, good and bad (issue 22).

``answer(mode, person, garment, category)`` makes one, at ``person``'s size (the canvas).
``MODES`` maps each mode to the quality check that must catch it (None: it must pass). The
tests of the checks, ``bench/quality.py`` and the fake Gemini use them.

Every answer goes through ``model_round_trip`` as a generative model's answer does: drawn
at about a megapixel, slightly shifted, with a little noise, a colour drift and JPEG, then
brought back to the canvas. A check that passed only pixel-exact answers would reject every
real one.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core.images import to_canvas
from fitting.engines.local import LocalEngine, face_candidates, find_body

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"

MODES: dict[str, str | None] = {
    "good": None,  # the garment composited onto its body region
    "unchanged": "changed",  # the photo answered as it was
    "product": "not_product",  # the product photo alone
    "face_replaced": "identity",  # another person's face where the face was
    "face_distorted": "identity",  # the face warped out of shape
    "recoloured": "garment",  # the garment in a far-off colour
    "background": "scene",  # the background repainted
    "recomposed": "identity",  # the frame zoomed and moved (scene also sees it on a textured background)
}
BAD_MODES = [mode for mode, check in MODES.items() if check is not None]


def answer(mode: str, person: Image.Image, garment: Image.Image, category: str, *, seed: int = 0) -> Image.Image:
    """The ``mode`` answer for dressing ``person`` in ``garment``, as RGB of ``person``'s size."""
    return answers(person, garment, category, [mode], seed=seed)[mode]


def answers(
    person: Image.Image, garment: Image.Image, category: str, modes: list[str], *, seed: int = 0
) -> dict[str, Image.Image]:
    """Several modes' answers at once: the good composite, which most start from, is made once."""
    person = person.convert("RGB")
    good = composite(person, garment, category) if set(modes) - {"unchanged", "product"} else None
    return {mode: _answer(mode, person, garment, good, seed=seed) for mode in modes}


def _answer(
    mode: str, person: Image.Image, garment: Image.Image, good: Image.Image | None, *, seed: int
) -> Image.Image:
    if mode == "unchanged":
        raw = person
    elif mode == "product":
        raw = to_canvas(garment, person.size)
    else:
        assert good is not None
        if mode == "good":
            raw = good
        elif mode == "face_replaced":
            raw = replace_face(good)
        elif mode == "face_distorted":
            raw = distort_face(good)
        elif mode == "recoloured":
            raw = recolour(good, garment_mask(person, good))
        elif mode == "background":
            raw = repaint_background(good, garment_mask(person, good))
        elif mode == "recomposed":
            raw = recompose(good)
        else:
            raise ValueError(f"unknown answer mode {mode!r}: one of {', '.join(MODES)}")
    return model_round_trip(raw, seed=seed)


def composite(person: Image.Image, garment: Image.Image, category: str) -> Image.Image:
    """The local engine's own paste: the garment cut out and placed on its body region."""
    return (
        LocalEngine()
        .apply_garment(person=person, garment=garment, category=category, canvas_size=person.size, timeout=60)
        .image
    )


def model_round_trip(image: Image.Image, *, seed: int = 0) -> Image.Image:
    """What a generative model's answer looks like once the pipeline fits it to the canvas.

    Redrawn at about one megapixel, moved by 0.4% of the long side, with sensor-like noise,
    a slight colour drift and JPEG at quality 85; then resized back (``to_canvas``).
    """
    rng = np.random.default_rng(seed)
    size = image.size
    scale = math.sqrt(1_000_000 / (size[0] * size[1]))
    model_size = (round(size[0] * scale), round(size[1] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    rgb = cv2.resize(np.asarray(image), model_size, interpolation=interpolation)
    shift = 0.004 * max(model_size)
    matrix = np.float32([[1, 0, shift], [0, 1, -shift / 2]])
    rgb = cv2.warpAffine(rgb, matrix, model_size, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    rgb *= np.float32([1.03, 1.01, 0.98])
    rgb += 2 + 2.5 * rng.standard_normal(rgb.shape, dtype=np.float32)
    buffer = io.BytesIO()
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return to_canvas(Image.open(io.BytesIO(buffer.getvalue())), size)


def garment_mask(person: Image.Image, good: Image.Image) -> np.ndarray:
    """Where the local engine pasted the garment: the pixels ``good`` changed (exactly)."""
    return np.any(np.asarray(person) != np.asarray(good), axis=2)


def face_box(image: Image.Image) -> tuple[int, int, int, int]:
    """The local engine's best face (left, top, right, bottom) on ``image``, at its size."""
    scale = min(1.0, 384 / max(image.size))  # the size the quality checks detect at
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BOX)
    candidates = face_candidates(np.asarray(small.convert("L")))
    if not candidates:
        raise ValueError("no face on this photo: face modes need one")
    x, y, w, h = candidates[0][1]
    return round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale)


def _face_ellipse(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A feathered ellipse (0..1) over the face box, a little taller than it: brows to chin."""
    left, top, right, bottom = box
    mask = np.zeros((size[1], size[0]), np.float32)
    centre = (round((left + right) / 2), round((top + bottom) / 2))
    axes = (round((right - left) * 0.45), round((bottom - top) * 0.55))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(1.0, (right - left) / 30))[:, :, None]


def replace_face(image: Image.Image) -> Image.Image:
    """Another person's face (from the other test photo) blended over the face."""
    box = face_box(image)
    stranger = _stranger_face("astronaut.png" if _is_hopper(image, box) else "grace_hopper.jpg")
    layer = image.copy()
    layer.paste(stranger.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS), box[:2])
    mask = _face_ellipse(image.size, box)
    blended = np.asarray(layer, np.float32) * mask + np.asarray(image, np.float32) * (1 - mask)
    return Image.fromarray(blended.round().astype(np.uint8))


@functools.cache
def _stranger_face(name: str) -> Image.Image:
    photo = Image.open(PHOTOS / name).convert("RGB")
    return photo.crop(face_box(photo))


def _is_hopper(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    """Whether ``image`` is Grace Hopper's photo: her face would not make a stranger."""
    theirs = np.asarray(_stranger_face("grace_hopper.jpg").convert("L").resize((32, 32)), np.float32)
    ours = np.asarray(image.convert("L").crop(box).resize((32, 32)), np.float32)
    return float(np.corrcoef(theirs.ravel(), ours.ravel())[0, 1]) > 0.7


def distort_face(image: Image.Image) -> Image.Image:
    """The face warped: features pushed about by a wave of a tenth of the face's width."""
    left, top, right, bottom = face_box(image)
    width = right - left
    margin = width // 2  # only the face and around it is warped: the rest is kept as it is
    region = (
        max(0, left - margin),
        max(0, top - margin),
        min(image.width, right + margin),
        min(image.height, bottom + margin),
    )
    rgb = np.asarray(image.crop(region), np.float32)
    ys, xs = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]].astype(np.float32)
    amplitude, period = 0.12 * width, 0.5 * width
    map_x = xs + amplitude * np.sin(2 * np.pi * ys / period)
    map_y = ys + amplitude * np.cos(2 * np.pi * xs / period)
    warped = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    box = (left - region[0], top - region[1], right - region[0], bottom - region[1])
    mask = _face_ellipse((rgb.shape[1], rgb.shape[0]), box)
    result = image.copy()
    result.paste(Image.fromarray((warped * mask + rgb * (1 - mask)).round().astype(np.uint8)), region[:2])
    return result


def recolour(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The garment's pixels turned to a far-off colour, keeping their shading.

    In CIELAB: hue turned half-way round, chroma raised to at least 45 (a white or black
    garment has no hue to turn), lightness pulled half-way towards the middle.
    """
    rgb = np.asarray(image).astype(np.float32) / 255
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
    a, b = lab[:, :, 1], lab[:, :, 2]
    chroma = np.hypot(a, b)
    hue = np.arctan2(b, a) + np.pi
    hue = np.where(chroma < 8, np.pi / 3, hue)  # no hue of its own: an orange-red
    chroma = np.maximum(chroma, 45)
    turned = np.dstack([(lab[:, :, 0] + 55) / 2, chroma * np.cos(hue), chroma * np.sin(hue)])
    out = cv2.cvtColor(turned.astype(np.float32), cv2.COLOR_Lab2RGB)
    result = np.where(mask[:, :, None], out, rgb)
    return Image.fromarray((result * 255).clip(0, 255).round().astype(np.uint8))


def repaint_background(image: Image.Image, garment: np.ndarray) -> Image.Image:
    """Everything but the person replaced by a studio backdrop of another colour.

    The person is the garment, the head and an ellipse around the body found by the
    local engine: roughly what a model keeps when it repaints the background.
    """
    frame = find_body(image)
    width, height = image.size
    keep = np.zeros((height, width), np.uint8)
    head = frame.head
    cv2.ellipse(
        keep,
        (round(frame.center_x), round(frame.chin_y - head * 0.5)),
        (round(head * 0.45), round(head * 0.6)),
        0,
        0,
        360,
        1,
        -1,
    )
    cv2.ellipse(
        keep,
        (round(frame.center_x), round(frame.below_chin(3))),
        (round(head * 1.3), round(head * 3.2)),
        0,
        0,
        360,
        1,
        -1,
    )
    keep = (keep > 0) | garment
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (ys / height)[:, :, None]
    backdrop = (1 - t) * np.float32([150, 200, 235]) + t * np.float32([235, 170, 190])  # sky blue to pink
    backdrop += 12 * np.sin(xs / 37 + ys / 53)[:, :, None]  # a soft texture, as a rendered backdrop has
    rgb = np.asarray(image, np.float32)
    return Image.fromarray(np.where(keep[:, :, None], rgb, backdrop).clip(0, 255).round().astype(np.uint8))


def recompose(image: Image.Image) -> Image.Image:
    """The frame zoomed in by a quarter and moved: the person no longer where they were."""
    width, height = image.size
    crop_w, crop_h = round(width / 1.25), round(height / 1.25)
    left, top = round(width * 0.16), round(height * 0.04)
    return image.crop((left, top, left + crop_w, top + crop_h)).resize(image.size, Image.Resampling.LANCZOS)
