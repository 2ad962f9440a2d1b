"""The quality gate's checks: is an engine's answer for one step worth keeping?

Pure functions on Pillow images and numpy arrays; no settings are read here (thresholds are
passed in), so the checks run the same in a worker, a test and ``bench/quality.py``.

Everything is measured at one working size: the step's input, the answer and the garment
are brought to a long side of ``WORK_SIDE`` once per call and every check reads the same
arrays. The body is found on the *input* only, with the local engine's detectors
(``fitting.engines.local.find_body``), so the regions are the ones the local engine itself
dresses. Five checks, each a value in [0, 1] where higher is better:

``changed``      share of the category's body region that differs from the input;
``identity``     structural similarity (SSIM) of the input's face and the answer's face,
                 after searching a small window for the best alignment;
``scene``        share of the area outside the person that is still the input;
``garment``      how much of the garment's main colours (k-means in Lab on its cut-out)
                 is present in the category's region;
``not_product``  one minus the correlation of the answer with the product photo fitted
                 to the canvas.

``prepare`` analyses a step's input and garment once (face, body, regions, palette);
``assess_answer`` scores one answer against it, so retries of a step pay only for the
answer. ``assess`` does both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
from PIL import Image

from fitting.engines.base import CATEGORIES
from fitting.engines.local import CHIN_PER_FACE_BOX, HEAD_PER_FACE_BOX, BodyFrame, cut_out_garment, find_body
from fitting.errors import EngineError

WORK_SIDE = 512  # every check runs on images of this long side
# The face detector is most of the time of a call: it runs smaller (a face of a full-length
# portrait is still about 30 px there, above the cascade's 24 px).
DETECT_SIDE = 384
CHECKS = ("changed", "identity", "scene", "garment", "not_product")
ASSESSMENT_VERSION = 1  # in ``as_json``: bump when a value's meaning changes

# --- regions, in head units of the local engine's body frame --------------------------------
# (half width, top, bottom), rows in heads below the chin. The bands are the inner part of
# where the local engine pastes each category (``local.PLACEMENTS``), so that a garment which
# is there at all covers most of its band.
BANDS: dict[str, tuple[float, float, float]] = {
    "torso": (0.8, 0.35, 2.6),
    "legs": (0.65, 2.3, 6.0),
    "feet": (0.8, 6.0, 6.8),
}
CATEGORY_BANDS: dict[str, tuple[str, ...]] = {
    "top": ("torso",),
    "outer": ("torso",),
    "bottom": ("legs",),
    "dress": ("torso", "legs"),
    "shoes": ("feet",),
}
# The person, for ``scene``: the head (crown to chin, with hair) and everything below the
# chin within this half width (an outer's sleeves reach about 1.6 heads from the axis).
HEAD_HALF_WIDTH = 0.6
HEAD_ABOVE_CHIN = 1.35
BODY_HALF_WIDTH = 1.75
MIN_REGION_SHARE = 0.01  # a region smaller than this share of the canvas is not judged

# --- measures -------------------------------------------------------------------------------
ALIGN_MAX = 0.02  # a shift up to this share of the long side is a redraw, not a new frame
BLUR_SIGMA = 2.0  # px at WORK_SIDE before colour differences: JPEG noise, a 1-2 px shift
CHANGED_DELTA_E = 10.0  # a pixel whose colour moved more than this (CIELAB ΔE76) has changed
SCENE_DELTA_E = 12.0  # a pixel outside the person closer than this is still the input's
GARMENT_DELTA_E = 20.0  # a pixel this close to one of the garment's main colours shows it
GARMENT_COLOURS = 3  # k of the k-means on the cut-out's pixels
GARMENT_EXPECTED_SHARE = 0.5  # a colour covering half its share of the garment counts as present
GARMENT_SIDE = 160  # the product photo is cut out at this long side
KMEANS_SAMPLES = 3000
FACE_SIDE = 48  # face crops are compared at this size
FACE_SEARCH = 0.25  # the answer's face is searched this share of the face's width around
MIN_FACE_SIDE = 12  # px at WORK_SIDE: a smaller face cannot be compared
PRODUCT_SIDE = 64  # the answer and the product photo are correlated at this long side


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Score:
    """One check's result. ``value`` is in [0, 1], higher is better; it passes at ``threshold``."""

    value: float
    outcome: Outcome
    threshold: float
    note: str = ""  # why a check was skipped; empty otherwise

    @property
    def margin(self) -> float:
        """``value`` mapped so the threshold is 0.5: below it [0, 0.5), at or above [0.5, 1]."""
        if self.value < self.threshold:
            return 0.5 * self.value / self.threshold
        if self.threshold >= 1:
            return 1.0
        return 0.5 + 0.5 * (self.value - self.threshold) / (1 - self.threshold)


@dataclass(frozen=True)
class Thresholds:
    """The value each check must reach to pass. Calibrated in ``bench/quality.py``.

    0 turns a check into a record only (it always passes); 1 makes it pass only when perfect.
    """

    changed: float = 0.15
    identity: float = 0.65
    scene: float = 0.45
    garment: float = 0.5
    not_product: float = 0.15

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Thresholds:
        """Defaults overridden by ``data`` (the ``FITTING_QUALITY_THRESHOLDS`` JSON object).

        Raises ``ValueError`` on an unknown check or a value that is not a number in [0, 1].
        """
        if not data:
            return cls()
        unknown = sorted(set(data) - set(CHECKS))
        if unknown:
            raise ValueError(f"unknown quality check(s) {', '.join(unknown)}: one of {', '.join(CHECKS)}")
        values = {}
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"the threshold of {name!r} must be a number from 0 to 1, not {value!r}")
            values[name] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class Assessment:
    """All checks of one answer. Rank attempts by ``(passed, score)``."""

    checks: dict[str, Score]

    @property
    def failed(self) -> list[str]:
        return [name for name, score in self.checks.items() if score.outcome == Outcome.FAILED]

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def score(self) -> float:
        """Mean of the judged checks' ``Score.margin``, in [0, 1]; 1.0 when nothing was judged."""
        margins = [score.margin for score in self.checks.values() if score.outcome != Outcome.SKIPPED]
        return round(sum(margins) / len(margins), 4) if margins else 1.0

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict for storing with the attempt; ``from_json`` reads it back."""
        return {
            "version": ASSESSMENT_VERSION,
            "passed": self.passed,
            "score": self.score,
            "failed": self.failed,
            "checks": {
                name: {"value": score.value, "outcome": str(score.outcome), "threshold": score.threshold}
                | ({"note": score.note} if score.note else {})
                for name, score in self.checks.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assessment:
        return cls(
            checks={
                name: Score(
                    value=float(check["value"]),
                    outcome=Outcome(check["outcome"]),
                    threshold=float(check["threshold"]),
                    note=check.get("note", ""),
                )
                for name, check in data["checks"].items()
            }
        )


Box = tuple[int, int, int, int]  # left, top, right, bottom at working size


@dataclass(frozen=True, eq=False)
class Reference:
    """What every answer of one step is compared with: the input and garment, analysed once."""

    category: str
    canvas_size: tuple[int, int]  # (width, height) of the input, which every answer must have
    work_size: tuple[int, int]
    lab: np.ndarray  # the input at working size, blurred, CIELAB float32
    grey: np.ndarray  # the input at working size, uint8
    frame: BodyFrame  # at working size
    face: Box | None  # at working size; None when no face was found
    region: np.ndarray  # bool mask of the category's bands
    outside: np.ndarray  # bool mask of the area outside the person
    palette: np.ndarray | None  # (k, 3) Lab centres of the garment's main colours
    palette_weights: np.ndarray | None  # (k,) their shares of the garment, summing to 1
    product: list[np.ndarray] = field(default_factory=list)  # normalised grey thumbnails of the product


# --- entry points ---------------------------------------------------------------------------
def assess(
    step_input: Image.Image,
    garment: Image.Image,
    answer: Image.Image,
    category: str,
    thresholds: Thresholds | None = None,
) -> Assessment:
    """Score ``answer`` (already fitted to the canvas: ``step_input``'s size) on every check."""
    return assess_answer(prepare(step_input, garment, category), answer, thresholds)


def prepare(step_input: Image.Image, garment: Image.Image, category: str) -> Reference:
    """Analyse a step's input and garment once; ``assess_answer`` reuses it for every attempt."""
    if category not in CATEGORY_BANDS:
        raise ValueError(f"unknown category {category!r}: one of {', '.join(CATEGORIES)}")
    rgb = _to_work(step_input)
    height, width = rgb.shape[:2]
    frame = _find_body(rgb)
    palette, weights = _garment_palette(garment)
    return Reference(
        category=category,
        canvas_size=step_input.size,
        work_size=(width, height),
        lab=_lab(rgb),
        grey=cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
        frame=frame,
        face=_face_box(frame, width, height),
        region=_region_mask(frame, CATEGORY_BANDS[category], width, height),
        outside=~_person_mask(frame, width, height),
        palette=palette,
        palette_weights=weights,
        product=_product_thumbnails(garment, (width, height)),
    )


def assess_answer(reference: Reference, answer: Image.Image, thresholds: Thresholds | None = None) -> Assessment:
    """Score one answer against a prepared step. ``answer`` must have the canvas size."""
    if answer.size != reference.canvas_size:
        raise ValueError(f"the answer is {answer.size}, not the canvas size {reference.canvas_size}: fit it first")
    thresholds = thresholds or Thresholds()
    rgb = _aligned(reference, _to_work(answer))
    lab = _lab(rgb)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    delta = np.linalg.norm(lab - reference.lab, axis=2)
    values: dict[str, float | str] = {
        "changed": _changed(reference, delta),
        "identity": _identity(reference, grey),
        "scene": _scene(reference, delta),
        "garment": _garment(reference, lab),
        "not_product": _not_product(reference, grey),
    }
    return Assessment(checks={name: _score(values[name], getattr(thresholds, name)) for name in CHECKS})


def _aligned(reference: Reference, rgb: np.ndarray) -> np.ndarray:
    """The answer moved back by the small shift a model's redraw adds (at most ``ALIGN_MAX``).

    Phase correlation at half the working size; a larger shift is a recomposed frame, left
    as it is for the checks to see.
    """
    width, height = reference.work_size
    half = (max(1, width // 2), max(1, height // 2))
    a = cv2.resize(reference.grey, half, interpolation=cv2.INTER_AREA).astype(np.float32)
    b = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), half, interpolation=cv2.INTER_AREA).astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(half, cv2.CV_32F))
    dx, dy = 2 * dx, 2 * dy
    if math.hypot(dx, dy) > ALIGN_MAX * max(width, height) or math.hypot(dx, dy) < 0.5:
        return rgb
    matrix = np.float32([[1, 0, -dx], [0, 1, -dy]])
    return cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def _score(value: float | str, threshold: float) -> Score:
    """A number is judged against the threshold; a string is the reason the check was skipped."""
    if isinstance(value, str):
        return Score(value=0.0, outcome=Outcome.SKIPPED, threshold=threshold, note=value)
    value = round(min(1.0, max(0.0, value)), 4)
    return Score(value=value, outcome=Outcome.PASSED if value >= threshold else Outcome.FAILED, threshold=threshold)


# --- preparing ------------------------------------------------------------------------------
def _to_work(image: Image.Image) -> np.ndarray:
    """RGB uint8 at ``WORK_SIDE`` long side (never enlarged)."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    factor = max(image.size) // WORK_SIDE
    if factor >= 2:  # Pillow's box reduction first: copying a 2048 px image to numpy costs more
        image = image.reduce(factor)
    rgb = np.asarray(image)
    height, width = rgb.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    if scale == 1.0:
        return np.ascontiguousarray(rgb)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """Blurred CIELAB (L in 0..100), float32: colour differences in ΔE units."""
    blurred = cv2.GaussianBlur(rgb, (0, 0), BLUR_SIGMA)
    return cv2.cvtColor(blurred.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def _find_body(rgb: np.ndarray) -> BodyFrame:
    """The local engine's body frame, found at ``DETECT_SIDE`` and scaled to the working size."""
    height, width = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    small = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    frame = find_body(Image.fromarray(small))
    return BodyFrame(
        center_x=frame.center_x / scale, chin_y=frame.chin_y / scale, head=frame.head / scale, source=frame.source
    )


def _face_box(frame: BodyFrame, width: int, height: int) -> Box | None:
    """The frontal-face box the frame was placed from (square, as the cascade's boxes are).

    ``find_body`` does not return the box, so it is recovered from the frame with the
    local engine's own proportions; a frame from another detector has no face.
    """
    if frame.source != "face":
        return None
    side = frame.head / HEAD_PER_FACE_BOX
    top = frame.chin_y - CHIN_PER_FACE_BOX * side
    left = frame.center_x - side / 2
    box = (round(left), round(top), round(left + side), round(top + side))
    box = (max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3]))
    if min(box[2] - box[0], box[3] - box[1]) < MIN_FACE_SIDE:
        return None
    return box


def _band_box(frame: BodyFrame, band: tuple[float, float, float], width: int, height: int) -> Box:
    half, top, bottom = band
    return (
        max(0, math.floor(frame.center_x - half * frame.head)),
        max(0, math.floor(frame.below_chin(top))),
        min(width, math.ceil(frame.center_x + half * frame.head)),
        min(height, math.ceil(frame.below_chin(bottom))),
    )


def _region_mask(frame: BodyFrame, bands: tuple[str, ...], width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for band in bands:
        left, top, right, bottom = _band_box(frame, BANDS[band], width, height)
        if right > left and bottom > top:
            mask[top:bottom, left:right] = True
    return mask


def _person_mask(frame: BodyFrame, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    head = _band_box(frame, (HEAD_HALF_WIDTH, -HEAD_ABOVE_CHIN, 0), width, height)
    body = _band_box(frame, (BODY_HALF_WIDTH, 0, height), width, height)  # to the bottom edge
    for left, top, right, bottom in (head, body):
        if right > left and bottom > top:
            mask[top:bottom, left:right] = True
    return mask


def _garment_palette(garment: Image.Image) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The cut-out's main colours (Lab centres) and their shares; None when nothing can be cut out."""
    small = garment.copy()
    small.thumbnail((GARMENT_SIDE, GARMENT_SIDE), Image.Resampling.BOX)
    try:
        cut_out = np.asarray(cut_out_garment(small).convert("RGBA"))
    except EngineError:
        return None, None
    pixels = cut_out[cut_out[:, :, 3] >= 200][:, :3]
    if len(pixels) < GARMENT_COLOURS * 10:
        return None, None
    if len(pixels) > KMEANS_SAMPLES:  # a regular subsample: the same colours, bounded time
        pixels = pixels[:: len(pixels) // KMEANS_SAMPLES + 1]
    lab = cv2.cvtColor(pixels[None].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[0]
    return _kmeans(lab, GARMENT_COLOURS)


def _kmeans(points: np.ndarray, k: int, iterations: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means: farthest-point start from the median colour, Lloyd's iterations."""
    centres = [np.median(points, axis=0)]
    for _ in range(1, k):
        distance = np.min([np.linalg.norm(points - c, axis=1) for c in centres], axis=0)
        centres.append(points[int(np.argmax(distance))])
    centres_array = np.array(centres, np.float32)
    for _ in range(iterations):
        labels = np.argmin(np.linalg.norm(points[:, None] - centres_array[None], axis=2), axis=1)
        for i in range(k):
            members = points[labels == i]
            if len(members):
                centres_array[i] = members.mean(axis=0)
    labels = np.argmin(np.linalg.norm(points[:, None] - centres_array[None], axis=2), axis=1)
    weights = np.bincount(labels, minlength=k).astype(np.float32) / len(points)
    keep = weights > 0
    return centres_array[keep], weights[keep]


def _product_thumbnails(garment: Image.Image, work_size: tuple[int, int]) -> list[np.ndarray]:
    """The product photo fitted to the canvas the two ways an engine might: cover and contain."""
    size = _product_size(work_size)
    rgb = _to_work(garment)
    height, width = rgb.shape[:2]
    thumbnails = []
    # Cover, centre-cropped (what ``core.images.to_canvas`` does to an answer of another shape).
    scale = max(size[0] / width, size[1] / height)
    cover_size = (max(size[0], round(width * scale)), max(size[1], round(height * scale)))
    cover = cv2.resize(rgb, cover_size, interpolation=cv2.INTER_AREA)
    left, top = (cover.shape[1] - size[0]) // 2, (cover.shape[0] - size[1]) // 2
    thumbnails.append(cover[top : top + size[1], left : left + size[0]])
    # Contain, on the photo's border colour.
    scale = min(size[0] / width, size[1] / height)
    inner = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    border = np.median(np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]), axis=0)
    contain = np.empty((size[1], size[0], 3), np.uint8)
    contain[:] = border.astype(np.uint8)
    left, top = (size[0] - inner.shape[1]) // 2, (size[1] - inner.shape[0]) // 2
    contain[top : top + inner.shape[0], left : left + inner.shape[1]] = inner
    thumbnails.append(contain)
    return [_normalised(cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)) for t in thumbnails]


def _product_size(work_size: tuple[int, int]) -> tuple[int, int]:
    scale = PRODUCT_SIDE / max(work_size)
    return max(1, round(work_size[0] * scale)), max(1, round(work_size[1] * scale))


def _normalised(grey: np.ndarray) -> np.ndarray:
    values = grey.astype(np.float32)
    values -= values.mean()
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 1e-6 else values


# --- the checks -----------------------------------------------------------------------------
def _changed(reference: Reference, delta: np.ndarray) -> float | str:
    if reference.region.mean() < MIN_REGION_SHARE:
        return f"the {reference.category}'s body region is not in the picture"
    return float(np.mean(delta[reference.region] > CHANGED_DELTA_E))


def _scene(reference: Reference, delta: np.ndarray) -> float | str:
    if reference.outside.mean() < MIN_REGION_SHARE:
        return "the person fills the picture: no background to compare"
    return float(np.mean(delta[reference.outside] <= SCENE_DELTA_E))


def _garment(reference: Reference, lab: np.ndarray) -> float | str:
    if reference.palette is None or reference.palette_weights is None:
        return "the garment could not be cut out of its photo"
    if reference.region.mean() < MIN_REGION_SHARE:
        return f"the {reference.category}'s body region is not in the picture"
    pixels = lab[reference.region]
    if len(pixels) > 20000:  # a regular subsample: same shares, bounded time
        pixels = pixels[:: len(pixels) // 20000 + 1]
    distance = np.linalg.norm(pixels[:, None] - reference.palette[None], axis=2)
    coverage = np.mean(distance <= GARMENT_DELTA_E, axis=0)
    presence = np.minimum(1.0, coverage / (GARMENT_EXPECTED_SHARE * reference.palette_weights))
    return float(np.sum(reference.palette_weights * presence))


def _identity(reference: Reference, grey: np.ndarray) -> float | str:
    if reference.face is None:
        return "no face found in the step's input"
    left, top, right, bottom = reference.face
    template = reference.grey[top:bottom, left:right]
    reach = round(FACE_SEARCH * (right - left))
    height, width = grey.shape
    window_left, window_top = max(0, left - reach), max(0, top - reach)
    window = grey[window_top : min(height, bottom + reach), window_left : min(width, right + reach)]
    if window.shape[0] < template.shape[0] or window.shape[1] < template.shape[1]:
        return 0.0
    match = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    _, _, _, (x, y) = cv2.minMaxLoc(match)
    found = window[y : y + template.shape[0], x : x + template.shape[1]]
    return _ssim(template, found)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004, Gaussian window σ 1.5) at ``FACE_SIDE``."""
    size = (FACE_SIDE, FACE_SIDE)
    x = cv2.resize(a, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    y = cv2.resize(b, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(ssim.mean())


def _not_product(reference: Reference, grey: np.ndarray) -> float | str:
    size = (reference.product[0].shape[1], reference.product[0].shape[0])
    answer = _normalised(cv2.resize(grey, size, interpolation=cv2.INTER_AREA))
    correlation = max(float(np.sum(answer * product)) for product in reference.product)
    return 1.0 - max(0.0, correlation)


__all__ = [
    "CATEGORIES",
    "CHECKS",
    "Assessment",
    "Outcome",
    "Reference",
    "Score",
    "Thresholds",
    "assess",
    "assess_answer",
    "prepare",
]
