"""What the Gemini engine says to the models, and how the message it gets back is tidied.

The prompts live as named versions (``PROMPT_SETS``); a job is pinned to one (its
``prompt_version``, part of its engine identity and of the result-cache and step-reuse keys)
and the engine speaks that version's words to it. A version never changes once shipped: a
changed wording is a new version, so results made with the old one are not served for it.
``DEFAULT_PROMPT_VERSION`` is what every job gets unless ``FITTING_PROMPT_EXPERIMENT``
assigns another (``assign_prompt_version``).

Light on purpose (no Django): the settings import it to check the experiment.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import regex

# v2: the image calls also ask for the canvas's aspect ratio (``image_config``).
# v3: and, to the 3.x image models, the output resolution (``image_config.image_size``).
# v4: dresses (one-piece, worn from the shoulders to its own length) and shoes (on the feet).
# v5: (an alternative, see ``_V5_STEP_PROMPT``) the product photo's own model ignored, per-category
#     fitting details, and the message told which garments were styled.
DEFAULT_PROMPT_VERSION = "v4"
PROMPT_VERSION = DEFAULT_PROMPT_VERSION  # the default version's name, as it was called before variants

# The seed's prompt, word for word.
MESSAGE_PROMPT = (
    "이 가상 피팅 결과 이미지를 보고 사용자에게 친근하고 매력적인 추천 메시지를 작성해주세요. "
    "한 문장으로, 이모지를 포함하여 작성해주세요. (최대 50자)"
)
MESSAGE_MAX_GRAPHEMES = 50
DEFAULT_EMOJI = "✨"

_GARMENT_WORDING = {
    "top": (
        "an upper-body garment (shirt, blouse, T-shirt, knitwear or similar)",
        "Replace only the top the person is wearing with it. Keep any trousers, skirt and "
        "outerwear exactly as they are.",
    ),
    "bottom": (
        "a lower-body garment (trousers, jeans, shorts or a skirt)",
        "Replace only the trousers or skirt the person is wearing with it. Keep the top, "
        "any outerwear and the shoes exactly as they are.",
    ),
    "outer": (
        "an outerwear garment (jacket, coat, cardigan or similar)",
        "Put it on over the top the person is already wearing, as outerwear is worn; the top "
        "may show where the outerwear is open. Keep the top and the trousers or skirt "
        "exactly as they are.",
    ),
    "dress": (
        "a one-piece dress",
        "It replaces both the top and the trousers or skirt the person is wearing: dress them in "
        "it from the shoulders down to the dress's own length (a short dress ends above the knee, "
        "a long one at the ankle), showing the legs below its hem. Keep the shoes exactly as they are.",
    ),
    "shoes": (
        "a pair of shoes",
        "Put them on the person's feet, replacing any shoes they wear, one shoe on each foot, "
        "sized and angled to the feet and the pose. Keep every garment above the feet exactly "
        "as it is.",
    ),
}

_STEP_PROMPT = """You are a virtual fitting tool. You receive three images, in this order:
1. a photo of a person;
2. a product photo of {garment};
3. a blank white canvas.

Dress the person in image 1 in the garment from image 2. Apply ONLY this garment. {placement}
Reproduce the garment faithfully: its colour, pattern, texture, print, logo and cut, fitted \
naturally to the person's body and pose, with realistic folds, shadows and lighting.
Keep everything else unchanged: the person's face, identity, expression, hair, skin tone, body \
shape and proportions, pose, hands, the background, and every garment already worn that is not \
being replaced.

Output exactly one photorealistic image of the whole scene, with the same framing as image 1 and \
exactly the size and aspect ratio of the blank canvas (image 3), which is only a size reference: \
do not draw on it or show it. No text, borders, watermarks or collage; do not show the product \
photo itself."""


def _v4_step_prompt(category: str) -> str:
    garment, placement = _GARMENT_WORDING[category]
    return _STEP_PROMPT.format(garment=garment, placement=placement)


def _v4_message_prompt(categories: tuple[str, ...]) -> str:
    return MESSAGE_PROMPT


# --- v5 ------------------------------------------------------------------------------------
# What v5 changes, and why (docs: "Prompt variants"):
# - Product photos are often worn by a model or a mannequin. v4 says "a product photo", and
#   the image model then sometimes carries the model's face, skin or pose over to the person
#   (the quality gate's "identity" and "not_product" failures, the users' "face_changed").
#   v5 says outright that only the garment is taken from image 2, never the body wearing it.
# - Per category, what decides whether a garment "fits": where a top's hem and sleeves end,
#   the waist and length of a bottom, an outer's open front and collar, a dress's neckline and
#   hem, shoes' soles on the ground. v4 says where the garment goes; v5 also says how it sits.
# - The message: the seed's prompt sees only the final image and guesses what was styled;
#   v5 also names the garments (in Korean), so the message speaks of what the user chose.
_V5_FIT = {
    "top": "Keep the garment's own sleeve length, neckline and hem length; tuck it in only if the "
    "product photo shows it tucked.",
    "bottom": "Sit the waistband at the waist the product photo shows (high, mid or low) and keep "
    "the garment's own leg width and length.",
    "outer": "Keep its own length, collar and closures, and show it open or closed as in the "
    "product photo; the sleeves cover the top's sleeves.",
    "dress": "Keep its own neckline, sleeves, waistline and hem length; the person's own top and "
    "trousers or skirt must not show anywhere.",
    "shoes": "Both soles rest on the ground where the feet stand now; keep the shoe's own shape, "
    "heel height and colour on both feet.",
}

_V5_STEP_PROMPT = """You are a virtual fitting tool. You receive three images, in this order:
1. PERSON: a photo of a person;
2. GARMENT: a product photo of {garment}. It may be worn by a model or a mannequin: take ONLY \
the garment from it, never that model's face, hair, skin, body or pose;
3. CANVAS: a blank white canvas.

Dress the PERSON in the garment from GARMENT. Apply ONLY this garment. {placement}
{fit}
Reproduce the garment faithfully: its colour, pattern, texture, print, logo and cut, fitted \
naturally to the PERSON's body and pose, with realistic folds, shadows and lighting that match \
the PERSON photo.
The PERSON must stay the same person: the same face, identity, expression, hair, skin tone, body \
shape and proportions, pose and hands. Keep the background and every garment already worn that is \
not being replaced exactly as they are.

Output exactly one photorealistic image of the whole scene, with the same framing as the PERSON \
photo and exactly the size and aspect ratio of the CANVAS, which is only a size reference: do not \
draw on it or show it. No text, borders, watermarks or collage; do not show the product photo itself."""

_KOREAN_CATEGORY = {"top": "상의", "bottom": "하의", "outer": "아우터", "dress": "원피스", "shoes": "신발"}


def _v5_step_prompt(category: str) -> str:
    garment, placement = _GARMENT_WORDING[category]
    return _V5_STEP_PROMPT.format(garment=garment, placement=placement, fit=_V5_FIT[category])


def _v5_message_prompt(categories: tuple[str, ...]) -> str:
    worn = ", ".join(_KOREAN_CATEGORY[c] for c in categories if c in _KOREAN_CATEGORY)
    if not worn:
        return MESSAGE_PROMPT
    return f"{MESSAGE_PROMPT} 사용자가 이번에 입어 본 아이템: {worn}. 이 아이템들의 코디에 대해 말해주세요."


# --- the versions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptSet:
    """One named version of the prompts: a step's prompt per category, and the message's."""

    version: str
    step: Callable[[str], str]  # category -> the step's prompt
    message: Callable[[tuple[str, ...]], str]  # the outfit's categories, in step order -> the message prompt


PROMPT_SETS: dict[str, PromptSet] = {
    "v4": PromptSet("v4", _v4_step_prompt, _v4_message_prompt),
    "v5": PromptSet("v5", _v5_step_prompt, _v5_message_prompt),
}


def prompt_set(version: str = DEFAULT_PROMPT_VERSION) -> PromptSet:
    """The prompts of ``version`` (KeyError for one that does not exist)."""
    return PROMPT_SETS[version]


def step_prompt(category: str, version: str = DEFAULT_PROMPT_VERSION) -> str:
    """The prompt for one fitting step; ``category`` is one of ``fitting.engines.base.CATEGORIES``."""
    return prompt_set(version).step(category)


def message_prompt(categories: tuple[str, ...] = (), version: str = DEFAULT_PROMPT_VERSION) -> str:
    """The prompt for the recommendation message about an outfit of ``categories`` (step order)."""
    return prompt_set(version).message(tuple(categories))


# --- the experiment: which version a new job gets -------------------------------------------
def parse_experiment(raw: str | dict | None) -> dict[str, int]:
    """``FITTING_PROMPT_EXPERIMENT`` checked: {version: weight}, every version known, every weight
    a positive integer; {} for none. Raises ValueError with one line saying what is wrong."""
    if raw in (None, "", {}):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"FITTING_PROMPT_EXPERIMENT is not JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            'FITTING_PROMPT_EXPERIMENT must be a JSON object of version: weight, e.g. {"v4": 80, "v5": 20}'
        )
    known = ", ".join(PROMPT_SETS)
    for version, weight in raw.items():
        if version not in PROMPT_SETS:
            raise ValueError(f"FITTING_PROMPT_EXPERIMENT names an unknown prompt version {version!r} (known: {known})")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
            raise ValueError(
                f"FITTING_PROMPT_EXPERIMENT: the weight of {version!r} must be a positive whole number, not {weight!r}"
            )
    return dict(raw)


def assign_prompt_version(job_id: uuid.UUID, experiment: dict[str, int]) -> str:
    """The prompt version a new job gets: by weight, and always the same for the same job id.

    The job id's SHA-256, taken modulo the total weight, falls into one version's share
    (versions in name order). Without an experiment: ``DEFAULT_PROMPT_VERSION``.
    """
    if not experiment:
        return DEFAULT_PROMPT_VERSION
    total = sum(experiment.values())
    point = int.from_bytes(hashlib.sha256(job_id.bytes).digest()[:8], "big") % total
    for version in sorted(experiment):
        point -= experiment[version]
        if point < 0:
            return version
    raise AssertionError("unreachable: the weights add up to the total")


# --- the recommendation message ----------------------------------------------------------
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]")
_GRAPHEME = regex.compile(r"\X")
# Line-start markdown: headings, block quotes, bullets and numbered items.
_LINE_MARKUP = regex.compile(r"^\s*(?:#{1,6}\s*|>\s*|[-*+•·]\s+|\d{1,2}[.)]\s+)+")
_INLINE_MARKUP = regex.compile(r"\*\*|__|[*_`~]")
_QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』", "«": "»"}
_STRAY_QUOTES = "\"'“”‘’「」『』«»"
# One emoji (a whole \X cluster ending in an emoji, modifier, VS16, joiner or keycap),
# after optional spaces.
_EMOJI_RUN = (
    r"(?:\s*\X(?<=[\p{Extended_Pictographic}\p{Regional_Indicator}\p{Emoji_Modifier}"
    r"\N{VARIATION SELECTOR-16}\N{ZERO WIDTH JOINER}\N{COMBINING ENCLOSING KEYCAP}]))"
)
# The end of the first sentence: terminal punctuation (and closing quotes or brackets),
# then any emoji, then a space before more text.
_SENTENCE_END = regex.compile(
    r"[.!?。！？…]+[\"'”’」』)\]]*"  # terminal punctuation
    rf"{_EMOJI_RUN}*+"  # possessive: the emoji stay with this sentence
    r"(?=\s+\S)"
)
_LEADING_EMOJI = regex.compile(rf"{_EMOJI_RUN}+")
# Text that ends like a sentence: terminal punctuation or emoji.
_COMPLETE_SENTENCE = regex.compile(rf"(?:[.!?。！？…]|{_EMOJI_RUN})$")
# A Korean final ending followed by emoji and more text ("정말 잘 어울려요 ✨ 다음엔 …"):
# the emoji ends the sentence where a full stop would.
_KOREAN_END_WITH_EMOJI = regex.compile(
    r"(?<=[요다죠까네])"
    rf"{_EMOJI_RUN}++"
    r"(?=\s+\S)"
)


def normalise_message(text: str | None) -> str | None:
    """Bring the text model's answer to one sentence, with emoji, at most 50 characters.

    Characters are user-perceived ones (grapheme clusters): an emoji sequence or a Korean
    syllable is never cut in half. Returns None when nothing is left.
    """
    if not text:
        return None
    lines = [_LINE_MARKUP.sub("", line) for line in text.splitlines()]
    text = _INLINE_MARKUP.sub("", " ".join(lines))
    text = " ".join(text.split())
    text = _strip_quotes(text)
    text = _first_sentence(text)
    text = _strip_quotes(text)
    if not text:
        return None
    text = _truncate(text, MESSAGE_MAX_GRAPHEMES)
    if not _EMOJI.search(text):
        text = f"{_truncate(text, MESSAGE_MAX_GRAPHEMES - 2)} {DEFAULT_EMOJI}"
    return text


def _strip_quotes(text: str) -> str:
    """Remove the quotes around the message.

    A quoted sentence followed by commentary ('"멋져요! 😊" 이런 메시지는 어때요?') is the
    message: it is kept, with the emoji right after its closing quote, and the rest dropped.
    """
    text = text.strip()
    while text and text[0] in _QUOTE_PAIRS:
        end = text.find(_QUOTE_PAIRS[text[0]], 1)
        if end == -1:  # no closing quote
            text = text[1:].strip()
            continue
        inner, rest = text[1:end].strip(), text[end + 1 :]
        emoji_after = _LEADING_EMOJI.match(rest)
        if _COMPLETE_SENTENCE.search(inner):
            text = inner + (emoji_after.group() if emoji_after else "")
        else:  # a quoted word or phrase at the start of the sentence
            text = (inner + rest).strip()
    return text.strip(_STRAY_QUOTES + " ")


def _first_sentence(text: str) -> str:
    ends = [m.end() for m in (_SENTENCE_END.search(text), _KOREAN_END_WITH_EMOJI.search(text)) if m]
    return text[: min(ends)].strip() if ends else text


def _truncate(text: str, limit: int) -> str:
    clusters = _GRAPHEME.findall(text)
    if len(clusters) <= limit:
        return text
    return "".join(clusters[:limit]).rstrip()
