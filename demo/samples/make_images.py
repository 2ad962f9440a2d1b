"""Draw the demo images in this folder: product-style garment photos and a standing figure.

Run ``python demo/samples/make_images.py`` from the repository root to regenerate them.
The output is deterministic (fixed noise seeds, no fonts, no system state), so running it
again gives byte-identical PNGs and a clean ``git status``.

Everything is drawn at ``SUPERSAMPLE`` times the final size and scaled down once, which
gives smooth edges without Pillow's (non-existent) anti-aliased polygon drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SUPERSAMPLE = 2
PRODUCT_SIZE = (600, 700)
PERSON_SIZE = (768, 1152)

WHITE_BACKGROUND = (255, 255, 255)
GREY_BACKGROUND = (206, 209, 214)  # a white garment needs a background it stands out from

Point = tuple[float, float]
RGB = tuple[int, int, int]

# Where the drawn figure's body is, in final-image pixels. Tests use these to check that
# garments land on the right body part; the drawing below is built from the same numbers.
# The figure is drawn like a fashion sketch (about ten heads tall): a face detector's box
# round a drawn face is larger, relative to the head, than round a photographed one, so a
# smaller head keeps body proportions measured from that box the same as in a photograph.
HEAD_TOP, HEAD_HEIGHT = 44, 92
BODY_UNIT = 135  # a photographed head's height at this face size: the body's proportions use it
NECK_BASE = 163
PERSON_LANDMARKS = {
    "center_x": 384,
    "head_top": HEAD_TOP,
    "chin": HEAD_TOP + HEAD_HEIGHT,
    "shoulder_y": NECK_BASE + round(0.3 * BODY_UNIT),
    "shoulder_half_width": round(0.9 * BODY_UNIT),
    "waist_y": NECK_BASE + round(2.0 * BODY_UNIT),
    "crotch_y": NECK_BASE + round(3.0 * BODY_UNIT),
    "knee_y": NECK_BASE + round(4.6 * BODY_UNIT),
    "ankle_y": NECK_BASE + round(6.3 * BODY_UNIT),
    "face_box": (344, 44, 424, 136),  # left, top, right, bottom: the drawn head
}


# --- small drawing helpers -----------------------------------------------------------------
def _scaled(points: Sequence[Point]) -> list[Point]:
    return [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points]


def _polygon_mask(size: tuple[int, int], polygons: Sequence[Sequence[Point]]) -> Image.Image:
    mask = Image.new("L", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        draw.polygon(_scaled(polygon), fill=255)
    return mask


def _cylinder_shading(size: tuple[int, int], center_x: float, half_width: float, depth: float) -> np.ndarray:
    """A brightness factor per pixel: 1 at ``center_x``, darker towards the sides.

    Cloth wraps round a body, so it catches less light at the sides; this is what makes a
    flat polygon read as a garment.
    """
    width, height = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    xs = (np.arange(width, dtype=np.float32) / SUPERSAMPLE - center_x) / half_width
    factor = 1.0 - depth * np.clip(xs, -1.4, 1.4) ** 2
    return np.broadcast_to(factor[None, :], (height, width))


def _cloth_texture(size: tuple[int, int], seed: int, strength: float) -> np.ndarray:
    """Fine deterministic noise, stretched vertically like a woven thread."""
    width, height = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, (height // 4 + 1, width)).astype(np.float32)
    noise = np.repeat(noise, 4, axis=0)[:height]
    return 1.0 + strength * noise


def _fill(colour: RGB, factor: np.ndarray) -> Image.Image:
    base = np.array(colour, dtype=np.float32)[None, None, :]
    pixels = np.clip(base * factor[:, :, None], 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _shade(colour: RGB, amount: float) -> RGB:
    """``colour`` darkened (amount < 1) or lightened (amount > 1)."""
    return tuple(int(max(0, min(255, round(c * amount)))) for c in colour)  # type: ignore[return-value]


def _lines(draw: ImageDraw.ImageDraw, lines: Sequence[Sequence[Point]], colour: RGB, width: float) -> None:
    for line in lines:
        draw.line(_scaled(line), fill=colour, width=max(1, round(width * SUPERSAMPLE)), joint="curve")


def _dashed(draw: ImageDraw.ImageDraw, start: Point, end: Point, colour: RGB, dash: float = 7) -> None:
    """Stitching: a dashed line from ``start`` to ``end``."""
    (x0, y0), (x1, y1) = start, end
    length = max(1.0, ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5)
    steps = int(length // (2 * dash))
    for i in range(steps):
        a, b = (2 * i * dash) / length, ((2 * i + 1) * dash) / length
        _lines(
            draw,
            [[(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)]],
            colour,
            1.2,
        )


def _dots(draw: ImageDraw.ImageDraw, centres: Sequence[Point], radius: float, colour: RGB, rim: RGB) -> None:
    for x, y in centres:
        box = [
            (x - radius) * SUPERSAMPLE,
            (y - radius) * SUPERSAMPLE,
            (x + radius) * SUPERSAMPLE,
            (y + radius) * SUPERSAMPLE,
        ]
        draw.ellipse(box, fill=colour, outline=rim, width=SUPERSAMPLE)


def _product_photo(
    *,
    background: RGB,
    polygons: Sequence[Sequence[Point]],
    colour: RGB,
    center_x: float,
    half_width: float,
    seed: int,
    texture: float = 0.025,
    depth: float = 0.22,
    details: Callable[[ImageDraw.ImageDraw], None],
) -> Image.Image:
    """A garment silhouette with shading, texture and details, on a plain studio background."""
    size = PRODUCT_SIZE
    mask = _polygon_mask(size, polygons)
    factor = _cylinder_shading(size, center_x, half_width, depth) * _cloth_texture(size, seed, texture)
    garment = _fill(colour, factor)
    draw = ImageDraw.Draw(garment)
    details(draw)

    canvas = Image.new("RGB", mask.size, background)
    # A faint, soft drop shadow, as under a flat-lay product shot.
    shadow = ImageChops.offset(mask, 6 * SUPERSAMPLE, 8 * SUPERSAMPLE).filter(
        ImageFilter.GaussianBlur(10 * SUPERSAMPLE)
    )
    shadow_colour = Image.new("RGB", mask.size, _shade(background, 0.95))
    canvas.paste(shadow_colour, (0, 0), shadow)
    canvas.paste(garment, (0, 0), mask)
    return canvas.resize(size, Image.Resampling.LANCZOS)


# --- garments ------------------------------------------------------------------------------
def navy_tshirt() -> Image.Image:
    colour: RGB = (34, 46, 88)
    body = [
        (245, 95),
        (270, 118),
        (300, 124),
        (330, 118),
        (355, 95),  # crew neck
        (440, 120),
        (470, 150),
        (508, 310),
        (450, 330),
        (428, 238),  # right shoulder and sleeve
        (432, 632),
        (300, 640),
        (168, 632),  # hem
        (172, 238),
        (150, 330),
        (92, 310),
        (130, 150),
        (160, 120),  # left sleeve and shoulder
    ]
    back_neck = [(258, 98), (300, 92), (342, 98), (330, 112), (300, 117), (270, 112)]

    def details(draw: ImageDraw.ImageDraw) -> None:
        dark = _shade(colour, 0.7)
        draw.polygon(_scaled(back_neck), fill=_shade(colour, 0.55))
        _lines(draw, [[(245, 95), (270, 118), (300, 124), (330, 118), (355, 95)]], _shade(colour, 1.25), 6)
        _lines(draw, [[(428, 238), (440, 120)], [(172, 238), (160, 120)]], dark, 2)  # sleeve seams
        _lines(draw, [[(236, 300), (252, 420), (246, 560)], [(370, 330), (356, 470)]], _shade(colour, 0.85), 3)
        _dashed(draw, (172, 612), (428, 612), dark)
        _dashed(draw, (100, 302), (152, 320), dark)
        _dashed(draw, (448, 320), (500, 302), dark)

    return _product_photo(
        background=WHITE_BACKGROUND,
        polygons=[body],
        colour=colour,
        center_x=300,
        half_width=150,
        seed=1,
        details=details,
    )


def white_shirt() -> Image.Image:
    colour: RGB = (247, 247, 245)
    body = [
        (250, 92),
        (300, 112),
        (350, 92),
        (432, 118),
        (462, 150),
        (536, 470),
        (540, 520),
        (490, 528),
        (480, 480),
        (426, 260),
        (430, 610),
        (402, 650),
        (300, 640),
        (198, 650),
        (170, 610),
        (174, 260),
        (120, 480),
        (110, 528),
        (60, 520),
        (64, 470),
        (138, 150),
        (168, 118),
    ]
    collar_left = [(250, 92), (300, 112), (288, 150), (238, 124)]
    collar_right = [(350, 92), (300, 112), (312, 150), (362, 124)]

    def details(draw: ImageDraw.ImageDraw) -> None:
        seam = (196, 197, 200)
        draw.polygon(_scaled(collar_left), fill=(252, 252, 251), outline=seam, width=2 * SUPERSAMPLE)
        draw.polygon(_scaled(collar_right), fill=(252, 252, 251), outline=seam, width=2 * SUPERSAMPLE)
        _lines(draw, [[(292, 140), (292, 642)], [(308, 140), (308, 642)]], seam, 1.5)  # placket
        _dots(draw, [(300, 175 + 70 * i) for i in range(7)], 5, (235, 235, 232), (170, 170, 172))
        _lines(draw, [[(426, 260), (432, 118)], [(174, 260), (168, 118)]], seam, 2)
        _lines(draw, [[(64, 470), (120, 480)], [(480, 480), (536, 470)]], seam, 2)  # cuffs
        draw.rectangle(_scaled([(212, 200), (268, 258)]), outline=seam, width=2 * SUPERSAMPLE)  # pocket
        _lines(
            draw,
            [[(230, 300), (240, 460)], [(372, 320), (362, 520)], [(150, 300), (110, 440)]],
            (222, 223, 226),
            3,
        )
        _lines(draw, [[(170, 610), (198, 650), (300, 640), (402, 650), (430, 610)]], seam, 2)

    return _product_photo(
        background=GREY_BACKGROUND,
        polygons=[body],
        colour=colour,
        center_x=300,
        half_width=170,
        seed=2,
        texture=0.01,
        depth=0.07,
        details=details,
    )


def _trousers() -> list[list[Point]]:
    return [
        [
            (200, 40),
            (400, 40),
            (408, 110),
            (428, 380),
            (440, 660),
            (330, 664),
            (304, 250),
            (296, 250),
            (270, 664),
            (160, 660),
            (172, 380),
            (192, 110),
        ]
    ]


def beige_chinos() -> Image.Image:
    colour: RGB = (208, 188, 152)

    def details(draw: ImageDraw.ImageDraw) -> None:
        dark = _shade(colour, 0.78)
        draw.rectangle(_scaled([(200, 40), (400, 78)]), fill=_shade(colour, 0.95), outline=dark, width=SUPERSAMPLE)
        for x in (222, 268, 332, 378):  # belt loops
            draw.rectangle(
                _scaled([(x - 5, 36), (x + 5, 86)]),
                fill=_shade(colour, 1.04),
                outline=dark,
                width=SUPERSAMPLE,
            )
        _dots(draw, [(300, 58)], 6, (120, 100, 70), (80, 64, 44))
        _lines(draw, [[(300, 78), (300, 230)], [(318, 78), (318, 196), (300, 226)]], dark, 2)  # fly
        _lines(draw, [[(206, 84), (248, 150)], [(394, 84), (352, 150)]], dark, 2)  # pockets
        _lines(draw, [[(236, 300), (218, 650)], [(364, 300), (382, 650)]], _shade(colour, 0.9), 3)  # creases
        _dashed(draw, (166, 642), (268, 646), dark)
        _dashed(draw, (332, 646), (436, 642), dark)

    return _product_photo(
        background=WHITE_BACKGROUND,
        polygons=_trousers(),
        colour=colour,
        center_x=300,
        half_width=140,
        seed=3,
        details=details,
    )


def blue_jeans() -> Image.Image:
    colour: RGB = (58, 92, 146)

    def details(draw: ImageDraw.ImageDraw) -> None:
        stitch = (214, 150, 74)  # the orange-gold thread jeans are sewn with
        draw.rectangle(_scaled([(200, 40), (400, 78)]), fill=_shade(colour, 0.92))
        _dashed(draw, (202, 72), (398, 72), stitch)
        for x in (222, 268, 332, 378):
            draw.rectangle(
                _scaled([(x - 5, 36), (x + 5, 86)]),
                fill=_shade(colour, 0.95),
                outline=_shade(colour, 0.7),
                width=SUPERSAMPLE,
            )
        _dots(draw, [(300, 58)], 7, (190, 170, 120), (120, 100, 60))
        _dots(draw, [(214, 92), (386, 92)], 3, (200, 180, 130), (120, 100, 60))  # rivets
        _dashed(draw, (318, 80), (318, 196), stitch)
        _dashed(draw, (318, 196), (300, 226), stitch)
        _lines(draw, [[(206, 84), (252, 148)], [(394, 84), (348, 148)]], _shade(colour, 0.7), 2)
        _lines(draw, [[(214, 420), (262, 430)], [(338, 430), (386, 420)]], _shade(colour, 1.18), 6)  # fading
        _lines(draw, [[(222, 200), (266, 210)], [(334, 210), (378, 200)]], _shade(colour, 1.12), 5)
        _dashed(draw, (166, 646), (268, 650), stitch)
        _dashed(draw, (332, 650), (436, 646), stitch)

    return _product_photo(
        background=WHITE_BACKGROUND,
        polygons=_trousers(),
        colour=colour,
        center_x=300,
        half_width=140,
        seed=4,
        texture=0.06,
        details=details,
    )


def khaki_trench_coat() -> Image.Image:
    colour: RGB = (128, 121, 78)
    body = [
        (240, 60),
        (300, 86),
        (360, 60),
        (444, 84),
        (476, 118),
        (548, 470),
        (552, 530),
        (498, 538),
        (488, 490),
        (436, 250),
        (452, 660),
        (300, 672),
        (148, 660),
        (164, 250),
        (112, 490),
        (102, 538),
        (48, 530),
        (52, 470),
        (124, 118),
        (156, 84),
    ]
    lapel_left = [(240, 60), (300, 86), (300, 300), (258, 210), (226, 130)]
    lapel_right = [(360, 60), (300, 86), (300, 300), (342, 210), (374, 130)]

    def details(draw: ImageDraw.ImageDraw) -> None:
        dark = _shade(colour, 0.72)
        draw.polygon(_scaled(lapel_left), fill=_shade(colour, 1.08), outline=dark, width=2 * SUPERSAMPLE)
        draw.polygon(_scaled(lapel_right), fill=_shade(colour, 0.94), outline=dark, width=2 * SUPERSAMPLE)
        draw.rectangle(_scaled([(160, 392), (440, 420)]), fill=_shade(colour, 0.9), outline=dark, width=SUPERSAMPLE)
        draw.rectangle(_scaled([(286, 388), (316, 424)]), outline=(60, 50, 36), width=3 * SUPERSAMPLE)  # buckle
        _dots(
            draw,
            [(262, 320), (338, 320), (262, 470), (338, 470), (262, 540), (338, 540)],
            7,
            (70, 58, 40),
            (40, 32, 22),
        )
        _lines(draw, [[(300, 300), (322, 664)]], dark, 2)  # front opening
        _lines(draw, [[(436, 250), (444, 84)], [(164, 250), (156, 84)]], dark, 2)
        _lines(draw, [[(58, 486), (114, 496)], [(486, 496), (542, 486)]], dark, 3)  # sleeve straps
        _lines(draw, [[(210, 440), (196, 650)], [(392, 440), (408, 650)]], _shade(colour, 0.88), 3)
        _dashed(draw, (152, 646), (448, 646), dark)

    return _product_photo(
        background=WHITE_BACKGROUND,
        polygons=[body],
        colour=colour,
        center_x=300,
        half_width=160,
        seed=5,
        details=details,
    )


def black_jacket() -> Image.Image:
    colour: RGB = (34, 34, 37)
    body = [
        (246, 70),
        (300, 92),
        (354, 70),
        (440, 96),
        (472, 130),
        (540, 440),
        (544, 492),
        (492, 500),
        (482, 452),
        (430, 260),
        (436, 520),
        (300, 528),
        (164, 520),
        (170, 260),
        (118, 452),
        (108, 500),
        (56, 492),
        (60, 440),
        (128, 130),
        (160, 96),
    ]

    def details(draw: ImageDraw.ImageDraw) -> None:
        sheen = _shade(colour, 1.9)
        draw.polygon(
            _scaled([(236, 62), (300, 92), (364, 62), (372, 96), (300, 122), (228, 96)]),
            fill=_shade(colour, 1.3),
        )  # knit collar
        _lines(draw, [[(300, 110), (300, 526)]], (150, 150, 156), 4)  # zip
        draw.rectangle(_scaled([(164, 486), (436, 526)]), fill=_shade(colour, 1.25))  # ribbed hem
        for x in range(170, 436, 8):
            _lines(draw, [[(x, 490), (x, 522)]], _shade(colour, 0.8), 1)
        _lines(draw, [[(56, 470), (110, 480)], [(490, 480), (544, 470)]], _shade(colour, 1.4), 8)  # cuffs
        _lines(draw, [[(200, 170), (230, 330)], [(404, 200), (378, 360)], [(470, 200), (512, 380)]], sheen, 3)
        _lines(draw, [[(210, 330), (262, 310)], [(390, 310), (338, 330)]], _shade(colour, 1.6), 2)  # pockets
        _lines(draw, [[(430, 260), (440, 96)], [(170, 260), (160, 96)]], _shade(colour, 1.5), 2)

    return _product_photo(
        background=WHITE_BACKGROUND,
        polygons=[body],
        colour=colour,
        center_x=300,
        half_width=160,
        seed=6,
        texture=0.04,
        details=details,
    )


def burgundy_dress() -> Image.Image:
    """A one-piece: cap sleeves, a fitted bodice, a waist seam and an A-line skirt to mid-calf."""
    colour: RGB = (128, 32, 52)
    body = [
        (250, 52),
        (300, 84),
        (350, 52),  # scoop neck
        (412, 62),
        (446, 92),
        (462, 150),
        (410, 160),  # right cap sleeve
        (398, 262),
        (392, 280),  # bodice to the waist
        (452, 520),
        (478, 668),
        (300, 680),
        (122, 668),
        (148, 520),  # the skirt's hem
        (208, 280),
        (202, 262),
        (190, 160),
        (138, 150),
        (154, 92),
        (188, 62),  # left cap sleeve
    ]

    def details(draw: ImageDraw.ImageDraw) -> None:
        dark = _shade(colour, 0.7)
        _lines(draw, [[(250, 52), (300, 84), (350, 52)]], _shade(colour, 1.3), 5)  # neckline binding
        _lines(draw, [[(208, 280), (300, 288), (392, 280)]], dark, 3)  # waist seam
        _lines(draw, [[(410, 160), (412, 62)], [(190, 160), (188, 62)]], dark, 2)  # armholes
        _lines(draw, [[(250, 300), (214, 660)], [(300, 300), (300, 672)], [(350, 300), (386, 660)]], dark, 2)  # folds
        _lines(draw, [[(274, 300), (256, 664)], [(326, 300), (344, 664)]], _shade(colour, 1.2), 3)  # light on folds
        _dashed(draw, (128, 652), (472, 652), dark)

    return _product_photo(
        background=WHITE_BACKGROUND,
        polygons=[body],
        colour=colour,
        center_x=300,
        half_width=170,
        seed=7,
        details=details,
    )


def _shoe(x: float) -> list[Point]:
    """One shoe of a pair, seen from the front: the opening at the top, the sole at the bottom."""
    return [(x - 64, 300), (x + 64, 300), (x + 88, 392), (x + 98, 440), (x - 98, 440), (x - 88, 392)]


def brown_loafers() -> Image.Image:
    """A pair of penny loafers side by side, seen from the front."""
    colour: RGB = (118, 78, 46)
    left, right = 192, 408

    def details(draw: ImageDraw.ImageDraw) -> None:
        for x in (left, right):
            draw.ellipse(_scaled([(x - 58, 292), (x + 58, 326)]), fill=(44, 30, 22))  # the opening
            draw.rectangle(_scaled([(x - 98, 430), (x + 98, 440)]), fill=(40, 28, 20))  # the sole
            _lines(draw, [[(x - 74, 350), (x + 74, 350)]], _shade(colour, 0.7), 6)  # the penny strap
            _dots(draw, [(x, 350)], 5, _shade(colour, 0.6), _shade(colour, 0.5))
            _lines(draw, [[(x - 40, 396), (x - 10, 420)], [(x + 30, 380), (x + 54, 410)]], _shade(colour, 1.35), 4)
            _dashed(draw, (x - 90, 422), (x + 90, 422), _shade(colour, 0.65), dash=5)

    return _product_photo(
        background=WHITE_BACKGROUND,
        polygons=[_shoe(left), _shoe(right)],
        colour=colour,
        center_x=300,
        half_width=220,
        seed=8,
        texture=0.03,
        details=details,
    )


# --- the person ----------------------------------------------------------------------------
SKIN: RGB = (226, 186, 154)
HAIR: RGB = (58, 40, 30)
BASE_LAYER: RGB = (196, 198, 204)  # a plain light-grey fitted base layer, like a fitting model


def drawn_person() -> Image.Image:
    """A front-view standing figure on a studio wall, with a face OpenCV's cascade finds."""
    width, height = PERSON_SIZE
    s = SUPERSAMPLE
    lm = PERSON_LANDMARKS
    cx, unit = lm["center_x"], BODY_UNIT

    rows = np.linspace(0.0, 1.0, height * s, dtype=np.float32)[:, None, None]
    wall_top, wall_bottom = np.array([238, 235, 230], np.float32), np.array([214, 210, 204], np.float32)
    wall = wall_top * (1 - rows) + wall_bottom * rows
    image = Image.fromarray(np.broadcast_to(wall, (height * s, width * s, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    floor_y = lm["ankle_y"] - 30
    draw.rectangle([0, floor_y * s, width * s, height * s], fill=(196, 190, 182))
    draw.ellipse(
        [(cx - 130) * s, (lm["ankle_y"] + 14) * s, (cx + 130) * s, (lm["ankle_y"] + 46) * s],
        fill=(180, 174, 166),
    )  # shadow on the floor

    def polygon(points: Sequence[Point], fill: RGB) -> None:
        draw.polygon(_scaled(points), fill=fill)

    def limb(points: Sequence[Point], fill: RGB, width_px: float) -> None:
        draw.line(_scaled(points), fill=fill, width=round(width_px * s), joint="curve")
        for x, y in points:
            r = width_px / 2
            draw.ellipse([(x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s], fill=fill)

    half, sy = lm["shoulder_half_width"], lm["shoulder_y"]
    # Arms hang slightly away from the body; hands reach mid-thigh.
    for side in (-1, 1):
        shoulder = (cx + side * (half - 20), sy + 18)
        elbow = (cx + side * (half + 4), lm["waist_y"] - 10)
        wrist = (cx + side * (half - 2), lm["crotch_y"] + round(0.45 * unit))
        limb([shoulder, elbow], BASE_LAYER, 0.34 * unit)
        limb([elbow, wrist], SKIN, 0.27 * unit)
        draw.ellipse([(wrist[0] - 17) * s, (wrist[1] - 6) * s, (wrist[0] + 17) * s, (wrist[1] + 40) * s], fill=SKIN)
    # Legs: thigh to ankle, then shoes.
    for side in (-1, 1):
        hip = (cx + side * 0.36 * unit, lm["crotch_y"] - 30)
        knee = (cx + side * 0.34 * unit, lm["knee_y"])
        ankle = (cx + side * 0.31 * unit, lm["ankle_y"])
        limb([hip, knee], SKIN, 0.6 * unit)
        limb([knee, ankle], SKIN, 0.4 * unit)
        polygon(
            [
                (ankle[0] - 26, ankle[1] - 6),
                (ankle[0] + 26, ankle[1] - 6),
                (ankle[0] + 30 + side * 12, ankle[1] + 30),
                (ankle[0] - 30 + side * 12, ankle[1] + 30),
            ],
            (52, 48, 46),
        )
    # Neck, then a fitted base layer: torso and shorts.
    chin = lm["chin"]
    polygon([(cx - 17, chin - 12), (cx + 17, chin - 12), (cx + 22, sy + 6), (cx - 22, sy + 6)], _shade(SKIN, 0.92))
    waist_half, hip_half = round(0.6 * unit), round(0.74 * unit)
    torso = [
        (cx - half, sy + 8),
        (cx - 36, sy - 8),
        (cx + 36, sy - 8),
        (cx + half, sy + 8),
        (cx + half - 10, sy + 0.6 * unit),
        (cx + waist_half, lm["waist_y"]),
        (cx + hip_half, lm["crotch_y"] - 40),
        (cx - hip_half, lm["crotch_y"] - 40),
        (cx - waist_half, lm["waist_y"]),
        (cx - half + 10, sy + 0.6 * unit),
    ]
    polygon(torso, BASE_LAYER)
    polygon(
        [
            (cx - hip_half, lm["crotch_y"] - 42),
            (cx + hip_half, lm["crotch_y"] - 42),
            (cx + hip_half + 4, lm["crotch_y"] + 50),
            (cx + 6, lm["crotch_y"] + 50),
            (cx, lm["crotch_y"]),
            (cx - 6, lm["crotch_y"] + 50),
            (cx - hip_half - 4, lm["crotch_y"] + 50),
        ],
        _shade(BASE_LAYER, 0.86),
    )
    polygon([(cx - 34, sy - 8), (cx + 34, sy - 8), (cx + 16, sy + 16), (cx - 16, sy + 16)], _shade(SKIN, 0.9))

    _draw_head(draw, cx, top=HEAD_TOP, size=HEAD_HEIGHT)
    image = image.resize(PERSON_SIZE, Image.Resampling.LANCZOS)
    # A touch of blur: a camera never renders edges as crisply as a drawing does.
    return image.filter(ImageFilter.GaussianBlur(0.8))


def _draw_head(draw: ImageDraw.ImageDraw, cx: float, *, top: float, size: float) -> None:
    """Hair, face and features, with the shading a face detector keys on.

    Viola-Jones cascades look for a dark band (brows and eyes) over lighter cheeks and a
    lighter bridge between the eyes, so the eye sockets are shaded, not just outlined.
    The features are laid out on a 140-unit head and scaled to ``size`` pixels.
    """
    k = size / 140

    def px(dx: float, y: float) -> tuple[float, float]:
        return (cx + dx * k) * SUPERSAMPLE, (top + (y - 60) * k) * SUPERSAMPLE

    def ellipse(dx0: float, y0: float, dx1: float, y1: float, fill: RGB) -> None:
        draw.ellipse([*px(dx0, y0), *px(dx1, y1)], fill=fill)

    ellipse(-62, 52, 62, 150, HAIR)  # hair behind the head
    ellipse(-54, 66, 54, 206, SKIN)  # face
    ellipse(-62, 118, -46, 150, _shade(SKIN, 0.9))  # ears
    ellipse(46, 118, 62, 150, _shade(SKIN, 0.9))
    draw.chord([*px(-58, 54), *px(58, 132)], 180, 360, fill=HAIR)  # fringe
    for side in (-1, 1):
        ex = side * 25
        ellipse(ex - 19, 119, ex + 19, 143, _shade(SKIN, 0.8))  # eye socket shadow
        draw.line(
            [px(ex - 17, 114), px(ex, 110), px(ex + 17, 114)],
            fill=(70, 50, 40),
            width=round(5 * k * SUPERSAMPLE),
        )  # brow
        ellipse(ex - 12, 125, ex + 12, 137, (246, 244, 240))  # eye white
        ellipse(ex - 6, 125, ex + 6, 137, (64, 44, 32))  # iris
        ellipse(ex - 3, 128, ex + 3, 134, (18, 14, 12))  # pupil
    draw.polygon([px(0, 134), px(-9, 166), px(9, 166)], fill=_shade(SKIN, 0.88))  # nose shade
    ellipse(-10, 162, 10, 170, _shade(SKIN, 0.78))  # nostrils
    draw.chord([*px(-20, 174), *px(20, 190)], 0, 180, fill=(170, 86, 86))  # mouth
    ellipse(-44, 150, -24, 168, _shade(SKIN, 1.03))  # cheeks catch the light
    ellipse(24, 150, 44, 168, _shade(SKIN, 1.03))


IMAGES: dict[str, Callable[[], Image.Image]] = {
    "top_navy_tshirt.png": navy_tshirt,
    "top_white_shirt.png": white_shirt,
    "bottom_beige_chinos.png": beige_chinos,
    "bottom_blue_jeans.png": blue_jeans,
    "outer_khaki_trench.png": khaki_trench_coat,
    "outer_black_jacket.png": black_jacket,
    "dress_burgundy_midi.png": burgundy_dress,
    "shoes_brown_loafers.png": brown_loafers,
    "person_drawn.png": drawn_person,
}


def main() -> None:
    for name, draw_image in IMAGES.items():
        # No metadata, fixed compression: the same pixels always give the same bytes.
        draw_image().save(HERE / name, "PNG", optimize=True)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
