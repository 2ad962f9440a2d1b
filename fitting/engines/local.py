"""The local engine: an offline, deterministic preview compositor (not generative try-on).

Each step cuts the garment out of its product photo, finds the body in the person photo
with OpenCV's bundled detectors (frontal-face Haar cascade, then the HOG people detector,
then fixed proportions), and pastes the garment on the body region of its category.
Body regions are measured in *head units* below the chin, the way figure drawing does.

A dress goes over the torso and the legs, from the shoulders to its own length; shoes go
at the feet, and a photo that does not show the feet fails the step (``GARMENT_NOT_PLACED``).

Later steps receive the previous step's output, with garments already pasted below the
neck. The face is found first and garments never cover it, so every step finds the same
body; nothing is cached between calls, so a resumed job gives the same pixels.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np
import regex
from django.utils.translation import gettext_lazy as _
from PIL import Image

from fitting.engines.base import KeepGoing, Outfit, StepResult
from fitting.engines.identity import LOCAL_IDENTITY
from fitting.errors import DeadlineExceeded, EngineError, GarmentNotPlacedError

# --- cutting the garment out ---------------------------------------------------------------
BACKGROUND_TOLERANCE = 22.0  # RGB distance from the border colour still counted as background
MIN_GARMENT_FRACTION = 0.01  # a cut-out smaller than this share of the photo is a failure
OPAQUE = 128


def cut_out_garment(garment: Image.Image) -> Image.Image:
    """The garment alone, as RGBA cropped to its bounding box.

    A photo with a meaningful alpha channel keeps it. Otherwise the background is the area
    connected to the image border whose colour is close to the border's median colour, so
    garment pixels of the same colour (a white shirt's inside on a white background) stay.
    """
    if garment.mode == "RGBA" and _has_meaningful_alpha(np.asarray(garment)[:, :, 3]):
        rgba = np.asarray(garment).copy()
    else:
        rgb = np.asarray(garment.convert("RGB"))
        rgba = np.dstack([rgb, _foreground_alpha(rgb)])
    alpha = rgba[:, :, 3]
    if np.count_nonzero(alpha >= OPAQUE) < MIN_GARMENT_FRACTION * alpha.size:
        raise EngineError("The garment could not be cut out of its photo: nothing stands out from the background.")
    ys, xs = np.nonzero(alpha)
    return Image.fromarray(rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], "RGBA")


def _has_meaningful_alpha(alpha: np.ndarray) -> bool:
    """Some pixels transparent and some opaque: not an RGBA photo saved with alpha all 255."""
    transparent = np.count_nonzero(alpha < OPAQUE)
    return MIN_GARMENT_FRACTION * alpha.size < transparent < (1 - MIN_GARMENT_FRACTION) * alpha.size


def _foreground_alpha(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    background_colour = np.median(border, axis=0)
    distance = np.linalg.norm(rgb.astype(np.float32) - background_colour, axis=2)
    near_background = (distance <= BACKGROUND_TOLERANCE).astype(np.uint8)

    _, labels = cv2.connectedComponents(near_background, connectivity=4)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border_labels = border_labels[border_labels != 0]  # label 0 is "not near background"
    foreground = (~np.isin(labels, border_labels)).astype(np.uint8) * 255

    # Opening drops specks of noise and the faint fringe of a drop shadow.
    kernel_size = max(3, round(min(height, width) / 200) * 2 + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, kernel)
    foreground = _keep_large_components(foreground)
    # Feather the edge a little so the paste does not show a hard, jagged outline.
    feather = max(0.8, min(height, width) / 500)
    return cv2.GaussianBlur(foreground, (0, 0), feather)


def _keep_large_components(mask: np.ndarray) -> np.ndarray:
    """Keep the largest foreground piece and any piece at least a tenth of its size."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.nonzero(areas >= areas.max() / 10)[0]
    return np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)


# --- finding the body ----------------------------------------------------------------------
DETECTION_MAX_SIDE = 640  # detectors run on a downscaled copy: faster, same boxes
# A frontal-face box spans brows to chin; from real photos, the head (crown to chin) is
# about 1.42 box heights and the chin about 1.15 box heights below the box's top.
HEAD_PER_FACE_BOX = 1.42
CHIN_PER_FACE_BOX = 1.15


@dataclass(frozen=True)
class BodyFrame:
    """Where the body is: its vertical axis, its chin line and its head height, in pixels."""

    center_x: float
    chin_y: float
    head: float
    source: str  # "face", "people" or "proportions": which detector placed it

    def below_chin(self, heads: float) -> float:
        return self.chin_y + heads * self.head


@functools.cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    """One of OpenCV's bundled Haar cascades, loaded once per process."""
    path = os.path.join(cv2.data.haarcascades, name)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise EngineError(f"OpenCV's cascade could not be loaded from {path}.")
    return cascade


def _face_cascade() -> cv2.CascadeClassifier:
    return _cascade("haarcascade_frontalface_default.xml")


@functools.cache
def _people_detector() -> cv2.HOGDescriptor:
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def find_body(person: Image.Image) -> BodyFrame:
    """Place the body from the face, else from a detected person, else from proportions."""
    rgb = np.asarray(person.convert("RGB"))
    height, width = rgb.shape[:2]
    scale = min(1.0, DETECTION_MAX_SIDE / max(height, width))
    small = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return (
        _frame_from_face(grey, scale)
        or _frame_from_people_detector(small, scale)
        or _frame_from_proportions(width, height)
    )


# Face choice. The cascade also fires on textures (a badge, a flag, folds of cloth), and
# such a false "face" is often larger than the real one; on a large photo detected at full
# size there are many. So detection runs at DETECTION_MAX_SIDE, and each candidate is
# scored for plausibility instead of taking the largest: eyes found in its upper half
# count most, then the cascade's own confidence, then nearness to the upper centre. (The
# person detector's box is not consulted: it is only the fallback when no face is found.)
FACE_MIN_NEIGHBORS = 3  # low on purpose: plausibility, not the cascade, rejects false faces
EYE_WEIGHT = 2.5  # per eye, at most two
MIN_FACE_FOR_EYES = 40  # px at detection size; below it eyes are too small to find
MIN_FACE_SCORE = 1.0  # a candidate with no eye and a weak cascade response is not a face


def _eye_cascade() -> cv2.CascadeClassifier:
    return _cascade("haarcascade_eye.xml")


def _eyes_in(grey: np.ndarray, face: tuple[int, int, int, int]) -> int | None:
    """How many eyes (0 to 2) lie in the upper half of ``face``; None when it is too small to tell."""
    x, y, w, h = face
    if w < MIN_FACE_FOR_EYES:
        return None
    upper = grey[y : y + round(h * 0.6), x : x + w]
    eye_min = max(8, w // 8)
    eyes = _eye_cascade().detectMultiScale(
        upper, scaleFactor=1.1, minNeighbors=3, minSize=(eye_min, eye_min), maxSize=(w // 2, w // 2)
    )
    return min(2, len(eyes))


def face_candidates(grey: np.ndarray) -> list[tuple[float, tuple[int, int, int, int]]]:
    """Face boxes on ``grey`` (detection size) with their plausibility score, best first."""
    height, width = grey.shape
    min_side = max(24, round(min(height, width) * 0.06))
    boxes, _, weights = _face_cascade().detectMultiScale3(
        grey,
        scaleFactor=1.1,
        minNeighbors=FACE_MIN_NEIGHBORS,
        minSize=(min_side, min_side),
        outputRejectLevels=True,
    )
    scored = []
    for box, weight in zip(boxes, np.ravel(weights), strict=True):
        x, y, w, h = (int(v) for v in box)
        centre_x, centre_y = x + w / 2, y + h / 2
        # A face in the lower part of the photo would be a garment print, not the wearer's.
        if centre_y >= height * 0.6:
            continue
        eyes = _eyes_in(grey, (x, y, w, h))
        score = min(float(weight), 6.0) / 2  # the cascade's confidence, capped
        score += EYE_WEIGHT * (eyes if eyes is not None else 1)  # too small to tell: one eye's worth
        score -= abs(centre_x - width / 2) / width  # off-centre: at most -0.5
        score -= centre_y / height  # low in the frame: at most -0.6
        if eyes == 0 and score < MIN_FACE_SCORE:
            continue
        scored.append((score, (x, y, w, h)))
    # Sorting on the whole box after the score makes ties deterministic.
    scored.sort(key=lambda item: (-item[0], -item[1][2], item[1][1], item[1][0]))
    return scored


def _frame_from_face(grey: np.ndarray, scale: float) -> BodyFrame | None:
    candidates = face_candidates(grey)
    if not candidates:
        return None
    x, y, w, h = candidates[0][1]
    return BodyFrame(
        center_x=(x + w / 2) / scale,
        chin_y=(y + CHIN_PER_FACE_BOX * h) / scale,
        head=HEAD_PER_FACE_BOX * h / scale,
        source="face",
    )


def _frame_from_people_detector(rgb: np.ndarray, scale: float) -> BodyFrame | None:
    height, width = rgb.shape[:2]
    if height < 128 or width < 64:  # smaller than the detector's window (OpenCV crashes on it)
        return None
    boxes, weights = _people_detector().detectMultiScale(rgb, winStride=(8, 8), padding=(8, 8), scale=1.05)
    # Only a standing figure that fills much of the photo is the wearer.
    candidates = [
        (float(weight), tuple(int(v) for v in box))
        for box, weight in zip(boxes, np.ravel(weights), strict=True)
        if box[3] >= 0.5 * height
    ]
    if not candidates:
        return None
    _, (x, y, w, h) = max(candidates)
    # The detector's 64x128 window holds a person 96 px tall, 16 px below its top edge.
    person_top, person_height = y + h * 16 / 128, h * 96 / 128
    head = person_height / 7.5
    return BodyFrame(
        center_x=(x + w / 2) / scale, chin_y=(person_top + head) / scale, head=head / scale, source="people"
    )


def _frame_from_proportions(width: int, height: int) -> BodyFrame:
    """A full-length figure centred in the frame: head top at 5% height, 7.5 heads tall."""
    head = height * 0.9 / 7.5
    return BodyFrame(center_x=width / 2, chin_y=height * 0.05 + head, head=head, source="proportions")


# --- placing the garment -------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Where one category of garment goes, in head units of the body frame.

    The garment is scaled so its *body* (measured on the cut-out, without sleeves or
    legs) is ``body_width`` wide, then its length is nudged towards ``length`` by at most
    ``max_stretch`` so unusual product-photo proportions still sit on the right band.
    ``measure_at`` None measures the whole cut-out's width (a pair of shoes has no middle).
    At least ``min_visible`` of the garment must land on the photo, or the step fails.
    """

    body_width: float
    top: float  # of the garment's top edge, in heads below the chin
    length: float | None
    measure_at: tuple[float, float] | None  # rows of the cut-out (fractions of its height) to measure
    max_stretch: float = 0.15
    min_visible: float = 0.05


PLACEMENTS = {
    "top": Placement(body_width=1.75, top=0.12, length=2.7, measure_at=(0.35, 0.45)),
    "bottom": Placement(body_width=1.45, top=1.9, length=4.4, measure_at=(0.04, 0.1)),
    # Outerwear goes over the top: wider, starting a little higher, its length its own.
    "outer": Placement(body_width=2.1, top=0.05, length=None, measure_at=(0.35, 0.45)),
    # A dress is measured across its bodice, just below the armholes, and keeps its own length:
    # a mini dress ends above the knee, a maxi dress at the ankle.
    "dress": Placement(body_width=1.75, top=0.12, length=None, measure_at=(0.2, 0.28)),
    # Shoes: the pair, side by side, across the feet at the ankles (about 6.3 heads below the
    # chin on a 7.5-head figure). Half of them must be in the photo: shoes cut off at the
    # frame's edge mean the feet are not in it.
    "shoes": Placement(body_width=1.3, top=6.1, length=0.5, measure_at=None, max_stretch=0.3, min_visible=0.5),
}
CATEGORY_LABELS = {
    "top": _("top"),
    "bottom": _("bottom"),
    "outer": _("outerwear"),
    "dress": _("dress"),
    "shoes": _("shoes"),
}
# A garment that covers less than this share of the canvas was not placed (nor one of which
# less than its placement's ``min_visible`` is on the canvas): the step fails with GARMENT_NOT_PLACED.
MIN_VISIBLE_CANVAS = 0.005


def place_garment(person: Image.Image, cut_out: Image.Image, category: str, frame: BodyFrame) -> Image.Image:
    """``person`` with ``cut_out`` alpha-composited on the body region of ``category``."""
    placement = PLACEMENTS[category]
    alpha = np.asarray(cut_out)[:, :, 3]
    garment_body_width = _body_width(alpha, placement.measure_at) if placement.measure_at else float(alpha.shape[1])
    scale = placement.body_width * frame.head / garment_body_width
    width = round(cut_out.width * scale)
    height = round(cut_out.height * scale)
    if placement.length is not None:
        wanted = placement.length * frame.head
        stretch = min(max(wanted / height, 1 - placement.max_stretch), 1 + placement.max_stretch)
        height = round(height * stretch)
    if width < 1 or height < 1:
        raise EngineError("The garment would be smaller than one pixel on this photo.")
    resized = cut_out.resize((width, height), Image.Resampling.LANCZOS)

    left = round(frame.center_x - width / 2)
    top = round(frame.below_chin(placement.top))
    layer = Image.new("RGBA", person.size, (0, 0, 0, 0))
    layer.paste(resized, (left, top))  # parts off the canvas are simply clipped
    _check_placed(np.asarray(resized)[:, :, 3], np.asarray(layer)[:, :, 3], category, placement.min_visible)
    return Image.alpha_composite(person.convert("RGBA"), layer).convert("RGB")


def _check_placed(garment_alpha: np.ndarray, layer_alpha: np.ndarray, category: str, min_visible: float) -> None:
    """Raise ``GarmentNotPlacedError`` when too little of the garment lands on the photo.

    A bottom on a head-and-shoulders photo falls below the frame; passing the step with the
    photo unchanged would tell the user the jeans were tried on when nothing happened.
    """
    garment = np.count_nonzero(garment_alpha >= OPAQUE)
    visible = np.count_nonzero(layer_alpha >= OPAQUE)
    if visible < min_visible * garment or visible < MIN_VISIBLE_CANVAS * layer_alpha.size:
        raise GarmentNotPlacedError(
            _("The %(category)s could not be placed: the photo does not show that part of the body.")
            % {"category": CATEGORY_LABELS[category]}
        )


def _body_width(alpha: np.ndarray, rows: tuple[float, float]) -> float:
    """Median width, over ``rows``, of the opaque run through the garment's middle column.

    Sleeves hang apart from a shirt's body and trouser legs part below the seat, so the
    run through the middle is the width that must match the wearer's body.
    """
    height, width = alpha.shape
    opaque = alpha >= OPAQUE
    middle = width // 2
    widths = []
    for y in range(int(height * rows[0]), max(int(height * rows[0]) + 1, int(height * rows[1]))):
        row = opaque[y]
        if not row[middle]:
            continue
        left = middle - int(np.argmin(row[middle::-1])) if not row[: middle + 1].all() else 0
        right = middle + int(np.argmin(row[middle:])) if not row[middle:].all() else width
        widths.append(right - left)
    if not widths:  # nothing opaque in the middle: fall back on the whole width
        return float(width)
    return float(np.median(widths))


# --- colours and the message ---------------------------------------------------------------
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "블랙": (28, 28, 30),
    "차콜": (64, 64, 68),
    "그레이": (140, 140, 140),
    "화이트": (245, 245, 243),
    "아이보리": (240, 234, 214),
    "베이지": (212, 190, 152),
    "브라운": (118, 78, 46),
    "카키": (125, 120, 76),
    "네이비": (32, 44, 86),
    "블루": (52, 92, 170),
    "스카이블루": (140, 190, 230),
    "민트": (160, 220, 200),
    "그린": (44, 120, 64),
    "레드": (196, 32, 40),
    "버건디": (118, 22, 42),
    "핑크": (236, 150, 178),
    "오렌지": (236, 128, 40),
    "옐로": (242, 210, 64),
    "퍼플": (110, 62, 150),
}
CATEGORY_NAMES = {"top": "상의", "bottom": "하의", "outer": "아우터", "dress": "원피스", "shoes": "신발"}
MAX_MESSAGE_GRAPHEMES = 50


class Phrase(str):
    """A "<colour> <category>" phrase that takes the right Korean particle as its format spec.

    ``"{0:가}".format(Phrase("블랙 신발"))`` is "블랙 신발이", and with "상의" "… 상의가": the
    particle follows the final syllable (with a final consonant: 이, 과; without: 가, 와).
    """

    PARTICLES = {"가": ("가", "이"), "와": ("와", "과")}

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        without_final, with_final = self.PARTICLES[spec]
        last = self[-1]
        has_final = "가" <= last <= "힣" and (ord(last) - ord("가")) % 28 != 0
        return f"{self}{with_final if has_final else without_final}"


# Longest first; the first that fits in 50 graphemes is used. {0}, {1}, {2} are
# "<colour> <category>" phrases (``Phrase``); "{0:가}" and "{0:와}" add the particle that fits.
MESSAGE_TEMPLATES: dict[int, tuple[str, ...]] = {
    1: (
        "{0} 하나로도 스타일이 깔끔하게 살아나요! ✨",
        "{0:가} 잘 어울려요! ✨",
    ),
    2: (
        "{0:와} {1} 조합이 산뜻하게 잘 어울려요! ✨",
        "{0:와} {1:가} 잘 어울려요! ✨",
    ),
    3: (
        "{0}, {1}에 {2}까지 더해 세련된 룩이 완성됐어요! 👍",
        "{0}, {1}, {2} 조합이 멋져요! 👍",
        "{0}, {1}, {2} 굿! 👍",
    ),
    # FITTING_MAX_ITEMS=4: top, bottom, outer and shoes.
    4: (
        "{0}, {1}, {2}에 {3}까지 완벽한 룩이에요! 👍",
        "{0}, {1}, {2}, {3} 굿! 👍",
    ),
}


def dominant_colour(cut_out: Image.Image) -> tuple[int, int, int]:
    """The most common colour of the garment's opaque pixels (coarsely binned, then averaged)."""
    rgba = np.asarray(cut_out.convert("RGBA"))
    pixels = rgba[rgba[:, :, 3] >= 200][:, :3].astype(np.int64)
    if len(pixels) == 0:
        raise EngineError("The garment has no opaque pixels to take a colour from.")
    bins = (pixels[:, 0] // 32) * 64 + (pixels[:, 1] // 32) * 8 + pixels[:, 2] // 32
    counts = np.bincount(bins, minlength=512)
    top_bin = int(np.argmax(counts))  # argmax takes the first of equal counts: deterministic
    mean = pixels[bins == top_bin].mean(axis=0)
    return (round(mean[0]), round(mean[1]), round(mean[2]))


def colour_name(rgb: tuple[int, int, int]) -> str:
    """The Korean fashion name of the palette colour nearest to ``rgb`` in CIELAB."""
    names = list(COLOUR_NAMES)
    palette = np.array([COLOUR_NAMES[name] for name in names], dtype=np.uint8)[None]
    sample = np.array([[rgb]], dtype=np.uint8)
    palette_lab = cv2.cvtColor(palette, cv2.COLOR_RGB2LAB)[0].astype(np.float32)
    sample_lab = cv2.cvtColor(sample, cv2.COLOR_RGB2LAB)[0, 0].astype(np.float32)
    return names[int(np.argmin(np.linalg.norm(palette_lab - sample_lab, axis=1)))]


def grapheme_count(text: str) -> int:
    """User-perceived characters: an emoji with modifiers counts as one."""
    return len(regex.findall(r"\X", text))


def compose_message(phrases: list[str]) -> str:
    """One sentence from one to four "<colour> <category>" phrases (``MESSAGE_TEMPLATES``), within 50 graphemes."""
    templates = MESSAGE_TEMPLATES[len(phrases)]
    for template in templates:
        message = template.format(*map(Phrase, phrases))
        if grapheme_count(message) <= MAX_MESSAGE_GRAPHEMES:
            return message
    return "코디가 잘 어울려요! ✨"


# --- the engine ----------------------------------------------------------------------------
class LocalEngine:
    """Offline preview: garments pasted on the detected body, a templated message."""

    identity = LOCAL_IDENTITY
    deterministic = True  # the quality gate checks its answers but never asks again

    def apply_garment(
        self,
        *,
        person: Image.Image,
        garment: Image.Image,
        category: str,
        canvas_size: tuple[int, int],
        timeout: float,
        keep_going: KeepGoing | None = None,  # one pass, never repeated: nothing to ask
        seed: int | None = None,  # deterministic: no seed to take
    ) -> StepResult:
        """``person`` is canvas-sized, and so is the result: the garment is pasted on it."""
        if timeout <= 0:
            raise DeadlineExceeded()
        if category not in PLACEMENTS:
            raise EngineError(f"Unknown garment category {category!r}.")
        try:
            cut_out = cut_out_garment(garment)
            image = place_garment(person, cut_out, category, find_body(person))
        except (EngineError, GarmentNotPlacedError):
            raise
        except Exception as exc:  # OpenCV and Pillow raise many types; the job needs one
            raise EngineError(f"The local preview could not place the {category}: {exc}") from exc
        return StepResult(image=image, usage={})

    def write_message(self, *, outfit: Outfit, timeout: float, keep_going: KeepGoing | None = None) -> str | None:
        """A templated message from the garments' categories and colours; the image is unused."""
        if timeout <= 0:
            raise DeadlineExceeded()
        if len(outfit.garments) not in MESSAGE_TEMPLATES:
            return None
        phrases = [
            f"{colour_name(dominant_colour(cut_out_garment(garment.image)))} {CATEGORY_NAMES[garment.category]}"
            for garment in outfit.garments
        ]
        return compose_message(phrases)
