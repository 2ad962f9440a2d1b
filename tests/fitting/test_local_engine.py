"""The local preview engine on a drawn figure and on a real photograph.

Body bands come from the figure's own drawing (``make_images.PERSON_LANDMARKS``) and, for
the photo, from looking at it; never from the engine's own body finder.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import regex
from django.utils import translation
from PIL import Image, ImageDraw, ImageOps

from core.images import decode
from demo.samples.make_images import BODY_UNIT, PERSON_LANDMARKS
from fitting.engines.base import AppliedGarment, Outfit
from fitting.engines.local import (
    CATEGORY_NAMES,
    COLOUR_NAMES,
    LocalEngine,
    Phrase,
    compose_message,
    face_candidates,
    find_body,
)
from fitting.errors import DeadlineExceeded, EngineError, GarmentNotPlacedError

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "samples"
ASTRONAUT = ROOT / "tests" / "data" / "photos" / "astronaut.png"
HOPPER = ROOT / "tests" / "data" / "photos" / "grace_hopper.jpg"

NAVY = (34, 46, 88)
BEIGE = (208, 188, 152)
DENIM = (58, 92, 146)
KHAKI = (128, 121, 78)
BLACK = (34, 34, 37)
WHITE = (247, 247, 245)
BURGUNDY = (128, 32, 52)
BROWN = (118, 78, 46)

Box = tuple[int, int, int, int]  # left, top, right, bottom

_lm = PERSON_LANDMARKS
_cx = _lm["center_x"]
DRAWN_FACE: Box = _lm["face_box"]
DRAWN_TORSO: Box = (_cx - 70, _lm["shoulder_y"] + 40, _cx + 70, _lm["waist_y"])
DRAWN_LEGS: Box = (
    _cx - round(0.6 * BODY_UNIT),
    _lm["knee_y"] - 40,
    _cx + round(0.6 * BODY_UNIT),
    _lm["knee_y"] + 80,
)
# The feet: the drawn shoes, from just above the ankle to the floor.
DRAWN_FEET: Box = (_cx - round(0.6 * BODY_UNIT), _lm["ankle_y"] - 4, _cx + round(0.6 * BODY_UNIT), _lm["ankle_y"] + 30)
# The astronaut photo is 512x512 and ends at her waist: face and chest are in frame.
ASTRONAUT_FACE: Box = (185, 75, 265, 160)
ASTRONAUT_TORSO: Box = (140, 300, 310, 420)
ASTRONAUT_BELOW_WAIST: Box = (140, 470, 310, 512)
# Grace Hopper's portrait is 512x600, head and shoulders in uniform, glasses, a flag beside her.
HOPPER_FACE: Box = (165, 130, 360, 330)
HOPPER_TORSO: Box = (120, 420, 420, 600)


def demo(name: str) -> Image.Image:
    return Image.open(DEMO / name)


def drawn_person() -> Image.Image:
    return demo("person_drawn.png").convert("RGB")


def astronaut() -> Image.Image:
    return Image.open(ASTRONAUT).convert("RGB")


def dress(person: Image.Image, *steps: tuple[str, str]) -> Image.Image:
    engine = LocalEngine()
    image = person
    for category, garment in steps:
        image = engine.apply_garment(
            person=image, garment=demo(garment), category=category, canvas_size=person.size, timeout=30
        ).image
    return image


def garment_share(before: Image.Image, after: Image.Image, colour: tuple[int, int, int], box: Box) -> float:
    """Share of ``box`` whose pixels changed and are now close to ``colour``."""
    a = np.asarray(before.crop(box), dtype=np.float32)
    b = np.asarray(after.crop(box), dtype=np.float32)
    changed = np.linalg.norm(b - a, axis=2) > 30
    coloured = np.linalg.norm(b - np.array(colour, np.float32), axis=2) < 60
    return float(np.mean(changed & coloured))


def garment_width(before: Image.Image, after: Image.Image, colour: tuple[int, int, int], row: int) -> int:
    """Horizontal extent, on ``row``, of the pixels that changed to ``colour``."""
    a = np.asarray(before, dtype=np.float32)[row]
    b = np.asarray(after, dtype=np.float32)[row]
    changed = np.linalg.norm(b - a, axis=1) > 30
    xs = np.nonzero(changed & (np.linalg.norm(b - np.array(colour, np.float32), axis=1) < 60))[0]
    return int(xs.max() - xs.min()) if len(xs) else 0


# --- placement -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("person", "face", "torso", "legs"),
    [
        (drawn_person, DRAWN_FACE, DRAWN_TORSO, DRAWN_LEGS),
        (astronaut, ASTRONAUT_FACE, ASTRONAUT_TORSO, None),  # the photo ends above her legs
    ],
    ids=["drawn", "photo"],
)
def test_top_covers_the_torso_not_the_face_or_legs(person, face, torso, legs):
    before = person()
    after = dress(before, ("top", "top_navy_tshirt.png"))
    assert garment_share(before, after, NAVY, torso) > 0.8
    assert garment_share(before, after, NAVY, face) == 0
    if legs is not None:
        assert garment_share(before, after, NAVY, legs) < 0.05


def test_bottom_covers_the_legs_not_the_torso_on_the_drawn_figure():
    # Jeans, not chinos: beige is too close to the figure's skin to tell apart.
    before = drawn_person()
    after = dress(before, ("bottom", "bottom_blue_jeans.png"))
    assert garment_share(before, after, DENIM, DRAWN_LEGS) > 0.5
    assert garment_share(before, after, DENIM, DRAWN_TORSO) < 0.05
    assert garment_share(before, after, DENIM, DRAWN_FACE) == 0


def test_bottom_stays_below_the_waist_on_the_photo():
    before = astronaut()
    after = dress(before, ("bottom", "bottom_beige_chinos.png"))
    assert garment_share(before, after, BEIGE, ASTRONAUT_BELOW_WAIST) > 0.3
    assert garment_share(before, after, BEIGE, ASTRONAUT_TORSO) < 0.05
    assert garment_share(before, after, BEIGE, ASTRONAUT_FACE) == 0


@pytest.mark.parametrize(
    ("person", "torso"), [(drawn_person, DRAWN_TORSO), (astronaut, ASTRONAUT_TORSO)], ids=["drawn", "photo"]
)
def test_outer_goes_over_the_top_and_wider(person, torso):
    original = person()
    with_top = dress(original, ("top", "top_white_shirt.png"))
    with_outer = dress(with_top, ("outer", "outer_khaki_trench.png"))
    assert garment_share(original, with_outer, KHAKI, torso) > 0.6
    assert garment_share(original, with_outer, WHITE, torso) < 0.2
    chest_row = (torso[1] + torso[3]) // 2
    top_width = garment_width(original, with_top, WHITE, chest_row)
    assert top_width > 0
    assert garment_width(original, with_outer, KHAKI, chest_row) > top_width


def test_a_dress_covers_the_torso_and_the_legs_to_its_own_length():
    before = drawn_person()
    after = dress(before, ("dress", "dress_burgundy_midi.png"))
    assert garment_share(before, after, BURGUNDY, DRAWN_TORSO) > 0.8
    assert garment_share(before, after, BURGUNDY, DRAWN_LEGS) > 0.5  # a midi dress: past the knees
    assert garment_share(before, after, BURGUNDY, DRAWN_FACE) == 0
    assert garment_share(before, after, BURGUNDY, DRAWN_FEET) < 0.05  # and above the ankles


def test_shoes_go_on_the_feet_and_nowhere_else():
    before = drawn_person()
    after = dress(before, ("shoes", "shoes_brown_loafers.png"))
    assert garment_share(before, after, BROWN, DRAWN_FEET) > 0.4
    assert garment_share(before, after, BROWN, DRAWN_LEGS) == 0
    assert garment_share(before, after, BROWN, DRAWN_TORSO) == 0
    # Over a dress and outerwear, they still land on the same feet.
    outfit_after = dress(
        before,
        ("dress", "dress_burgundy_midi.png"),
        ("outer", "outer_black_jacket.png"),
        ("shoes", "shoes_brown_loafers.png"),
    )
    assert garment_share(before, outfit_after, BROWN, DRAWN_FEET) > 0.4


@pytest.mark.parametrize(
    "photo",
    [
        lambda: astronaut(),  # she ends at the waist
        lambda: drawn_person().crop((0, 0, 768, _lm["knee_y"] + 60)),  # cut at the knees
        lambda: drawn_person().crop((0, 0, 768, _lm["ankle_y"] - 10)),  # cut just above the feet
    ],
    ids=["photo-to-the-waist", "drawn-to-the-knees", "drawn-to-the-ankles"],
)
def test_shoes_on_a_photo_without_the_feet_fail_the_step(photo):
    with translation.override("en"), pytest.raises(GarmentNotPlacedError) as caught:
        dress(photo(), ("shoes", "shoes_brown_loafers.png"))
    assert caught.value.code == "GARMENT_NOT_PLACED"
    assert caught.value.message == "The shoes could not be placed: the photo does not show that part of the body."
    # In Korean, without a particle that fits only some names (상의를, but 신발을).
    with translation.override("ko"), pytest.raises(GarmentNotPlacedError) as caught:
        dress(photo(), ("shoes", "shoes_brown_loafers.png"))
    assert caught.value.message == "사진에 그 부위가 보이지 않아 신발 배치에 실패했습니다."


def test_later_steps_find_the_same_body_as_the_first():
    """Detection on a step's output (garments pasted) places the bottom as on the photo."""
    person = drawn_person()
    on_photo = dress(person, ("bottom", "bottom_blue_jeans.png"))
    on_step_one = dress(person, ("top", "top_navy_tshirt.png"), ("bottom", "bottom_blue_jeans.png"))
    below_the_top = (0, _lm["crotch_y"] + 40, person.width, person.height)
    assert on_photo.crop(below_the_top).tobytes() == on_step_one.crop(below_the_top).tobytes()


# --- the output ----------------------------------------------------------------------------
@pytest.mark.parametrize("canvas_size", [(768, 1152), (600, 900), (512, 512)])
def test_output_is_rgb_of_exactly_the_canvas_size(canvas_size):
    # The pipeline passes a canvas-sized person; the engine pastes on it, never resizes.
    image = (
        LocalEngine()
        .apply_garment(
            person=drawn_person().resize(canvas_size),
            garment=demo("top_navy_tshirt.png"),
            category="top",
            canvas_size=canvas_size,
            timeout=30,
        )
        .image
    )
    assert image.mode == "RGB"
    assert image.size == canvas_size


def test_same_inputs_give_identical_bytes():
    def png(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    steps = [
        ("top", "top_white_shirt.png"),
        ("bottom", "bottom_blue_jeans.png"),
        ("outer", "outer_black_jacket.png"),
    ]
    assert png(dress(drawn_person(), *steps)) == png(dress(drawn_person(), *steps))


# --- cutting the garment out ---------------------------------------------------------------
GREY = (128, 128, 128)


def grey_person() -> Image.Image:
    return Image.new("RGB", (600, 900), GREY)


def red_disc_on_white() -> Image.Image:
    image = Image.new("RGB", (400, 400), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((50, 50, 350, 350), fill=(220, 20, 30))
    return image


def pasted_red_box(after: Image.Image) -> tuple[np.ndarray, Box]:
    pixels = np.asarray(after, dtype=np.int32)
    red = (pixels[:, :, 0] > 150) & (pixels[:, :, 1] < 80)
    ys, xs = np.nonzero(red)
    assert len(xs) > 1000, "the garment was not pasted"
    return pixels, (xs.min(), ys.min(), xs.max(), ys.max())


def assert_only_the_disc_was_pasted(after: Image.Image) -> None:
    pixels, (left, top, right, bottom) = pasted_red_box(after)
    # The corners of the disc's bounding box lie outside the disc: they keep the person's grey.
    inset = max(3, (right - left) // 20)
    for x, y in [
        (left + inset, top + inset),
        (right - inset, top + inset),
        (left + inset, bottom - inset),
        (right - inset, bottom - inset),
    ]:
        assert tuple(pixels[y, x]) == GREY
    assert not np.any(np.all(pixels > 240, axis=2)), "white background pixels were pasted"


def test_white_background_of_a_product_photo_is_not_pasted():
    garment = red_disc_on_white()
    after = (
        LocalEngine()
        .apply_garment(person=grey_person(), garment=garment, category="top", canvas_size=(600, 900), timeout=30)
        .image
    )
    assert_only_the_disc_was_pasted(after)


def test_an_rgba_garment_keeps_its_alpha():
    # Red everywhere in RGB, a disc only in alpha: pasting the RGB, or cutting out by colour,
    # would give a red square or nothing; only alpha gives the disc.
    garment = Image.new("RGBA", (400, 400), (220, 20, 30, 0))
    ImageDraw.Draw(garment).ellipse((50, 50, 350, 350), fill=(220, 20, 30, 255))
    after = (
        LocalEngine()
        .apply_garment(person=grey_person(), garment=garment, category="top", canvas_size=(600, 900), timeout=30)
        .image
    )
    assert_only_the_disc_was_pasted(after)


def test_a_photo_with_nothing_to_cut_out_is_an_engine_error():
    with pytest.raises(EngineError):
        LocalEngine().apply_garment(
            person=grey_person(),
            garment=Image.new("RGB", (300, 300), (240, 240, 240)),
            category="top",
            canvas_size=(600, 900),
            timeout=30,
        )


def test_no_time_left_raises_deadline_exceeded():
    with pytest.raises(DeadlineExceeded):
        LocalEngine().apply_garment(
            person=drawn_person(),
            garment=demo("top_navy_tshirt.png"),
            category="top",
            canvas_size=(768, 1152),
            timeout=0,
        )
    with pytest.raises(DeadlineExceeded):
        LocalEngine().write_message(outfit=outfit(("top", demo("top_navy_tshirt.png"))), timeout=-1)


# --- the message ---------------------------------------------------------------------------
EMOJI = regex.compile(r"\p{Extended_Pictographic}")


def outfit(*garments: tuple[str, Image.Image]) -> Outfit:
    return Outfit(image=drawn_person(), garments=tuple(AppliedGarment(c, image) for c, image in garments))


HANGUL = regex.compile(r"\p{Hangul}")


def assert_one_korean_sentence_with_emoji(message: str) -> None:
    assert len(regex.findall(r"\X", message)) <= 50
    assert HANGUL.search(message)
    assert EMOJI.search(message)
    assert len(regex.findall(r"[.!?]", message)) == 1, "more or less than one sentence"
    assert "\n" not in message


@pytest.mark.parametrize(
    ("garments", "words"),
    [
        ([("top", "top_navy_tshirt.png")], ["네이비", "상의"]),
        (
            [("top", "top_navy_tshirt.png"), ("bottom", "bottom_beige_chinos.png")],
            ["네이비", "베이지", "하의"],
        ),
        (
            [
                ("top", "top_white_shirt.png"),
                ("bottom", "bottom_blue_jeans.png"),
                ("outer", "outer_khaki_trench.png"),
            ],
            ["화이트", "블루", "카키", "아우터"],
        ),
        (
            [
                ("top", "top_navy_tshirt.png"),
                ("bottom", "bottom_beige_chinos.png"),
                ("outer", "outer_black_jacket.png"),
            ],
            ["네이비", "베이지", "블랙"],
        ),
        (
            [("dress", "dress_burgundy_midi.png"), ("shoes", "shoes_brown_loafers.png")],
            ["버건디 원피스와", "브라운 신발"],
        ),
        ([("shoes", "shoes_brown_loafers.png")], ["브라운 신발"]),
    ],
    ids=["one", "two", "three", "three-black", "dress-shoes", "shoes"],
)
def test_message_names_the_colours_in_one_short_korean_sentence(garments, words):
    engine = LocalEngine()
    worn = outfit(*[(category, demo(name)) for category, name in garments])
    message = engine.write_message(outfit=worn, timeout=5)
    assert message is not None
    assert_one_korean_sentence_with_emoji(message)
    for word in words:
        assert word in message
    assert message == engine.write_message(outfit=worn, timeout=5)


@pytest.mark.parametrize(
    "categories",
    [("top", "bottom", "outer", "shoes"), ("dress", "outer", "shoes")],
    ids=["separates", "dress"],
)
def test_every_colour_combination_fits_in_fifty_characters(categories):
    names = [CATEGORY_NAMES[c] for c in categories]
    for count in range(1, len(names) + 1):
        # Four garments: only the longest colour names can overflow (every combination takes seconds).
        pool = list(COLOUR_NAMES) if count < 4 else sorted(COLOUR_NAMES, key=len)[-4:]
        for colours in itertools.product(pool, repeat=count):
            message = compose_message([f"{c} {k}" for c, k in zip(colours, names[-count:], strict=False)])
            assert_one_korean_sentence_with_emoji(message)


def test_the_particles_follow_the_last_syllable():
    # 신발 ends in a final consonant (이, 과); 원피스 and 아우터 do not (가, 와).
    assert "{:가} {:와}".format(Phrase("블랙 신발"), Phrase("레드 원피스")) == "블랙 신발이 레드 원피스와"
    assert "{0:가} {0:와} {0}".format(Phrase("카키 아우터")) == "카키 아우터가 카키 아우터와 카키 아우터"
    assert "{:와}".format(Phrase("네이비 상의")) == "네이비 상의와"
    assert compose_message(["스카이블루 아우터", "스카이블루 신발"]).startswith("스카이블루 아우터와 스카이블루 신발")


# --- the face choice on real photos --------------------------------------------------------
# Each variant: (crop box on the original, long side it is scaled to, mirrored, pad aspect).
# The crops that keep the flag patch and the suit's folds beside a smaller face made the old
# engine take a larger false "face" there (its garments landed lower right, beside her).
PHOTOS = {"astronaut": (ASTRONAUT, ASTRONAUT_FACE, ASTRONAUT_TORSO), "hopper": (HOPPER, HOPPER_FACE, HOPPER_TORSO)}
PHOTO_VARIANTS = {
    "original-512": ((0, 0, 512, 512), 512, False, None),
    "small-480": ((0, 0, 512, 512), 480, False, None),
    "1200": ((0, 0, 512, 512), 1200, False, None),
    "portrait-3000x4000": ((64, 0, 448, 512), 4000, False, None),
    "crop-left-3000": ((0, 0, 420, 512), 3000, False, None),
    "crop-left-1200-mirrored": ((0, 0, 420, 512), 1200, True, None),
    "crop-right-800": ((120, 40, 512, 512), 800, False, None),
    "crop-top-3000": ((0, 0, 512, 380), 3000, False, None),
    "padded-16x9-2000": ((30, 20, 512, 512), 2000, False, (16, 9)),
    "padded-9x16-1200": ((0, 0, 420, 512), 1200, False, (9, 16)),
    "hopper-original-600": ((0, 0, 512, 600), 600, False, None),
    "hopper-small-480": ((0, 0, 512, 600), 480, False, None),
    "hopper-portrait-3000x4000": ((0, 0, 450, 600), 4000, False, None),
    "hopper-crop-low-1200-mirrored": ((0, 60, 512, 600), 1200, True, None),
    "hopper-padded-16x9-2000": ((0, 0, 512, 600), 2000, False, (16, 9)),
}
PAD_GREY = (120, 120, 120)


def photo_variant(name: str) -> tuple[Image.Image, Box, Box]:
    """The variant and where the true face and torso are on it (transformed from the annotation)."""
    crop, long_side, mirrored, pad = PHOTO_VARIANTS[name]
    path, true_face, true_torso = PHOTOS["hopper" if name.startswith("hopper-") else "astronaut"]
    image = Image.open(path).convert("RGB").crop(crop)

    def move(box: Box) -> tuple[float, float, float, float]:
        left, top, right, bottom = box[0] - crop[0], box[1] - crop[1], box[2] - crop[0], box[3] - crop[1]
        if mirrored:
            left, right = image.width - right, image.width - left
        return left, top, right, bottom

    face, torso = move(true_face), move(true_torso)
    if mirrored:
        image = ImageOps.mirror(image)
    if pad is not None:
        width, height = image.size
        if width * pad[1] < height * pad[0]:
            width = round(height * pad[0] / pad[1])
        else:
            height = round(width * pad[1] / pad[0])
        offset = ((width - image.width) // 2, (height - image.height) // 2)
        canvas = Image.new("RGB", (width, height), PAD_GREY)
        canvas.paste(image, offset)
        image = canvas
        face = (face[0] + offset[0], face[1] + offset[1], face[2] + offset[0], face[3] + offset[1])
        torso = (torso[0] + offset[0], torso[1] + offset[1], torso[2] + offset[0], torso[3] + offset[1])
    scale = long_side / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)

    def scaled(box) -> Box:
        return tuple(round(v * scale) for v in box)  # type: ignore[return-value]

    return image, scaled(face), scaled(torso)


def clip(box: Box, size: tuple[int, int]) -> Box:
    return (max(0, box[0]), max(0, box[1]), min(size[0], box[2]), min(size[1], box[3]))


@pytest.mark.parametrize("variant", list(PHOTO_VARIANTS))
def test_the_face_chosen_on_a_real_photo_is_hers_and_the_top_lands_on_her_torso(variant):
    person, face, torso = photo_variant(variant)
    frame = find_body(person)
    assert frame.source == "face"
    assert face[0] < frame.center_x < face[2], f"body axis {frame.center_x:.0f} outside the face {face}"
    # The chin is in the face box's lower half or just below it, not a head further down.
    face_height = face[3] - face[1]
    assert face[1] + face_height / 2 < frame.chin_y < face[3] + face_height / 2

    after = dress(person, ("top", "top_navy_tshirt.png"))
    assert garment_share(person, after, NAVY, clip(torso, person.size)) > 0.7
    assert garment_share(person, after, NAVY, face) == 0
    # Most of what changed lies on her side of the photo: under the face, within a
    # shoulder's reach of its middle (the old engine's top landed beside her, lower right).
    changed = np.linalg.norm(np.asarray(after, dtype=np.float32) - np.asarray(person, dtype=np.float32), axis=2) > 30
    ys, xs = np.nonzero(changed)
    reach = 2.2 * (face[2] - face[0])
    middle = (face[0] + face[2]) / 2
    assert np.mean(np.abs(xs - middle) < reach) > 0.9
    assert np.mean(ys > face[3]) > 0.99


def test_a_photo_with_an_exif_orientation_is_read_upright_and_her_face_is_found():
    # Pixels stored rotated a quarter turn, with the EXIF tag that says so (6: rotate 90° CW to view).
    upright, face, _ = photo_variant("1200")
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif)
    person = decode(buffer.getvalue()).convert("RGB")
    assert person.size == upright.size
    frame = find_body(person)
    assert frame.source == "face"
    assert face[0] < frame.center_x < face[2]


def test_a_false_face_without_eyes_loses_to_a_smaller_face_with_eyes():
    # The crop where the cascade also fires, larger, on the suit beside her.
    person, face, _ = photo_variant("crop-left-3000")
    scale = 640 / max(person.size)
    small = person.resize((round(person.width * scale), round(person.height * scale)), Image.Resampling.BOX)
    grey = np.asarray(small.convert("L"))
    candidates = face_candidates(grey)
    assert len(candidates) >= 1
    best = candidates[0][1]
    assert face[0] < (best[0] + best[2] / 2) / scale < face[2]


# --- a garment that cannot be placed -------------------------------------------------------
def test_a_bottom_on_a_head_and_shoulders_photo_fails_the_step_instead_of_passing_unchanged():
    head_and_shoulders = astronaut().crop((0, 0, 512, 300))
    with pytest.raises(GarmentNotPlacedError) as caught:
        dress(head_and_shoulders, ("bottom", "bottom_blue_jeans.png"))
    assert caught.value.code == "GARMENT_NOT_PLACED"
    # The top still fits on the same photo.
    after = dress(head_and_shoulders, ("top", "top_navy_tshirt.png"))
    assert garment_share(head_and_shoulders, after, NAVY, (160, 250, 300, 300)) > 0.7
