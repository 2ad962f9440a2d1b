"""The optional judge (FITTING_QUALITY_JUDGE=gemini): the text model looks at one answer.

It gets the step's input, the garment and the answer, and returns structured JSON through
``response_schema``: same person, garment applied, garment faithful, other clothes kept,
artifacts, and a 0-10 score. The pipeline asks it only for answers that passed the local
checks; what it says is recorded for staff and never fails a step (``judge`` returns None
when the call failed or timed out, and a Verdict without a verdict, but with the tokens the
call used, when the model answered something else than the verdict).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from google.genai import types
from PIL import Image

from fitting.engines import gemini
from fitting.engines.base import KeepGoing
from fitting.engines.gemini import _generate, _image_part, _text_of, _usage

logger = logging.getLogger(__name__)

PROMPT = (
    "You check a virtual try-on result. Image 1 is the person before this step, image 2 the "
    "garment's product photo, image 3 the result, which should show the same person, in the "
    "same place and scene, wearing the garment of image 2 ({category}) and otherwise the same "
    "clothes. Answer only with the JSON the schema asks for: same_person (the face and body are "
    "the person of image 1), garment_applied (the person wears the garment), garment_faithful "
    "(its colour, pattern and shape match image 2), other_clothes_kept (the other garments are "
    "unchanged), artifacts (visible defects: extra limbs, melted hands or text, seams, blur; "
    "an empty list when none), score (0 to 10, overall)."
)
VERDICT_SCHEMA = types.Schema(
    type=types.Type.OBJECT,
    properties={
        "same_person": types.Schema(type=types.Type.BOOLEAN),
        "garment_applied": types.Schema(type=types.Type.BOOLEAN),
        "garment_faithful": types.Schema(type=types.Type.BOOLEAN),
        "other_clothes_kept": types.Schema(type=types.Type.BOOLEAN),
        "artifacts": types.Schema(type=types.Type.ARRAY, items=types.Schema(type=types.Type.STRING)),
        "score": types.Schema(type=types.Type.NUMBER, minimum=0, maximum=10),
    },
    required=["same_person", "garment_applied", "garment_faithful", "other_clothes_kept", "artifacts", "score"],
)
FLAGS = ("same_person", "garment_applied", "garment_faithful", "other_clothes_kept")


@dataclass(frozen=True)
class Verdict:
    """What the judge said (``verdict``: the parsed JSON, normalised) and the tokens it used.

    ``verdict`` is None when the model answered but not with the verdict's JSON: the call
    was made and paid for, so its ``usage`` still counts.
    """

    verdict: dict[str, Any] | None
    usage: dict[str, int] = field(default_factory=dict)


def parse_verdict(text: str | None) -> dict[str, Any] | None:
    """The judge's JSON, normalised to the schema's fields; None when it is not that."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        verdict: dict[str, Any] = {name: bool(data[name]) for name in FLAGS}
        verdict["artifacts"] = [str(a) for a in (data.get("artifacts") or [])][:10]
        verdict["score"] = max(0.0, min(10.0, float(data["score"])))
    except (KeyError, TypeError, ValueError):
        return None
    return verdict


def judge(
    *,
    person: Image.Image,
    garment: Image.Image,
    answer: Image.Image,
    category: str,
    timeout: float,
    keep_going: KeepGoing | None = None,
) -> Verdict | None:
    """The text model's verdict on ``answer``; None when the call failed or timed out.

    An answer that is not the verdict's JSON gives ``Verdict(verdict=None, usage=…)``.
    ``keep_going`` is asked before each retry of the call (False: no retry, None returned).
    """
    if timeout <= 0:
        return None
    try:
        response = _generate(
            model=settings.GEMINI_TEXT_MODEL,
            setting="GEMINI_TEXT_MODEL",
            contents=[
                types.Part.from_text(text=PROMPT.format(category=category)),
                _image_part(person),
                _image_part(garment),
                _image_part(answer),
            ],
            config=types.GenerateContentConfig(
                response_mime_type="application/json", response_schema=VERDICT_SCHEMA, temperature=0
            ),
            deadline=gemini._now() + timeout,
            keep_going=keep_going,
        )
    except Exception:
        logger.warning("quality judge failed", exc_info=True)
        return None
    verdict = parse_verdict(_text_of(response))
    if verdict is None:
        logger.warning("quality judge answered no verdict: %.200r", _text_of(response))
    return Verdict(verdict=verdict, usage=_usage(response))
