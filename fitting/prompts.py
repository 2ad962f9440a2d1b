"""What the Gemini engine says to the models, and how the message it gets back is tidied.

``PROMPT_VERSION`` is part of the result-cache key: change it whenever a prompt changes,
so results made with the old wording are not served for the new one.
"""

from __future__ import annotations

import regex

# v2: the image calls also ask for the canvas's aspect ratio (``image_config``).
# v3: and, to the 3.x image models, the output resolution (``image_config.image_size``).
# v4: dresses (one-piece, worn from the shoulders to its own length) and shoes (on the feet).
PROMPT_VERSION = "v4"

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


def step_prompt(category: str) -> str:
    """The prompt for one fitting step; ``category`` is one of ``fitting.engines.base.CATEGORIES``."""
    garment, placement = _GARMENT_WORDING[category]
    return _STEP_PROMPT.format(garment=garment, placement=placement)


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
