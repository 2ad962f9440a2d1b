"""The prompts, and how the text model's message is brought to one short sentence."""

from __future__ import annotations

import pytest
import regex

from fitting.engines.base import CATEGORIES
from fitting.prompts import MESSAGE_PROMPT, normalise_message, step_prompt


def graphemes(text: str) -> list[str]:
    return regex.findall(r"\X", text)


def has_emoji(text: str) -> bool:
    return bool(regex.search(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]", text))  # flags too


def test_message_prompt_is_the_seeds_word_for_word():
    assert MESSAGE_PROMPT == (
        "이 가상 피팅 결과 이미지를 보고 사용자에게 친근하고 매력적인 추천 메시지를 작성해주세요. "
        "한 문장으로, 이모지를 포함하여 작성해주세요. (최대 50자)"
    )


@pytest.mark.parametrize("category", CATEGORIES)
def test_step_prompt_applies_only_this_garment_and_keeps_the_rest(category):
    prompt = step_prompt(category)
    assert "ONLY this garment" in prompt
    for kept in ("face", "identity", "body shape", "pose", "background"):
        assert kept in prompt
    assert "canvas" in prompt and "aspect ratio" in prompt


def test_step_prompts_name_their_category():
    assert "upper-body" in step_prompt("top")
    assert "trousers" in step_prompt("bottom") and "skirt" in step_prompt("bottom")
    assert "over the top" in step_prompt("outer")
    assert "one-piece dress" in step_prompt("dress")
    assert "from the shoulders down to the dress's own length" in step_prompt("dress")
    assert "replaces both the top and the trousers or skirt" in step_prompt("dress")
    assert "shoes" in step_prompt("shoes") and "feet" in step_prompt("shoes")
    assert len({step_prompt(c) for c in CATEGORIES}) == len(CATEGORIES) == 5


def test_step_prompt_rejects_an_unknown_category():
    with pytest.raises(KeyError):
        step_prompt("hat")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("정말 잘 어울려요! ✨", "정말 잘 어울려요! ✨"),
        # several sentences: the first, with the emoji that close it
        ("정말 잘 어울려요! ✨ 다음엔 모자를 더해보세요 👒", "정말 잘 어울려요! ✨"),
        ("정말 멋져요. 두 번째 문장이에요! 🎉", "정말 멋져요. ✨"),
        ("정말 잘 어울려요 ✨ 다음엔 모자를 더해보세요", "정말 잘 어울려요 ✨"),
        ("멋져요!!! 👍🏽✨ 또 입어봐요", "멋져요!!! 👍🏽✨"),
        # quotes
        ('"오늘의 룩, 완벽해요! 🔥"', "오늘의 룩, 완벽해요! 🔥"),
        ("“정말 멋져요!” 😍", "정말 멋져요! 😍"),
        ("‘산뜻한 봄 코디예요 🌸’", "산뜻한 봄 코디예요 🌸"),
        ("「산뜻한 봄 코디예요 🌸」", "산뜻한 봄 코디예요 🌸"),
        ('"정말 멋진 코디예요! 😊" 이런 메시지는 어떨까요?', "정말 멋진 코디예요! 😊"),
        ('"캐주얼" 룩이 잘 어울려요 😊', "캐주얼 룩이 잘 어울려요 😊"),
        # markdown
        ("**정말 멋진** 코디예요 😎", "정말 멋진 코디예요 😎"),
        ("# 추천\n> *완벽한* 데일리 룩이에요 💯", "추천 완벽한 데일리 룩이에요 💯"),
        ("- `캐주얼` 룩이 _잘_ 어울려요 👕", "캐주얼 룩이 잘 어울려요 👕"),
        # line breaks and spaces
        ("정말\n잘   어울려요\r\n🎉", "정말 잘 어울려요 🎉"),
        # no emoji
        ("정말 잘 어울려요!", "정말 잘 어울려요! ✨"),
        # numbers are not sentence ends
        ("2.5배 더 멋져요 😊", "2.5배 더 멋져요 😊"),
    ],
)
def test_normalise_message(raw, expected):
    assert normalise_message(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", "\n\n", '""', "“”", "**"])
def test_empty_message_is_none(raw):
    assert normalise_message(raw) is None


def test_long_message_is_cut_at_50_characters():
    message = normalise_message("가" * 80 + " 🎉")
    assert len(graphemes(message)) <= 50
    assert has_emoji(message)
    assert message.startswith("가" * 48)


def test_long_message_without_emoji_gets_one_within_50():
    message = normalise_message("나" * 80)
    assert message == "나" * 48 + " ✨"
    assert len(graphemes(message)) == 50


def test_emoji_at_the_end_of_a_long_message_is_kept_or_replaced():
    message = normalise_message("다" * 49 + "멋져요 😍")
    assert len(graphemes(message)) <= 50
    assert has_emoji(message)


@pytest.mark.parametrize("emoji", ["👩‍👩‍👧‍👦", "🧑‍💻", "👍🏽", "🇰🇷"])
@pytest.mark.parametrize("position", [48, 49, 50])
def test_emoji_sequence_across_the_limit_is_never_cut_in_half(emoji, position):
    message = normalise_message("a" * position + emoji + "bcd")
    clusters = graphemes(message)
    assert len(clusters) <= 50
    if emoji in message:
        assert clusters[position] == emoji  # whole, as one character
    else:
        assert not any(c in message for c in emoji.replace("\u200d", ""))  # no piece of it
    assert has_emoji(message)


def test_korean_syllables_are_never_cut():
    # Decomposed jamo (NFD) form one grapheme per syllable: a cut must not split them.
    import unicodedata

    text = unicodedata.normalize("NFD", "한" * 60)
    message = normalise_message(text)
    clusters = graphemes(message)
    assert len(clusters) == 50
    assert all(unicodedata.normalize("NFC", c) in ("한", " ", "✨") for c in clusters)
