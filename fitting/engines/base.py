"""The engine interface: apply one garment; write a message.

An engine is built once per worker process (``fitting.engines.get_engine``) and is
used by one job at a time. Images cross this boundary as decoded Pillow images so the
pipeline decodes each input once per job and keeps intermediates in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

CATEGORIES = ("top", "bottom", "outer")  # also the fixed step order


@dataclass
class StepResult:
    """What one garment step produced: an RGB image of the canvas size, plus usage."""

    image: Image.Image
    usage: dict[str, int] = field(default_factory=dict)  # prompt/candidates/total tokens


class Engine(Protocol):
    name: str  # "local" or "gemini"
    model: str  # the image model (or the local compositor's version)
    prompt_version: str  # part of the result-cache key

    def apply_garment(
        self,
        *,
        person: Image.Image,
        garment: Image.Image,
        category: str,
        canvas_size: tuple[int, int],
        timeout: float,
    ) -> StepResult:
        """Dress ``person`` in ``garment`` (one ``category``) and return a canvas-sized image.

        ``timeout`` is what is left of the job's deadline, in seconds. Raises a
        ``fitting.errors.JobError`` subclass on failure (``DeadlineExceeded`` past the
        deadline).
        """
        ...

    def write_message(
        self, *, image: Image.Image, garments: list[tuple[str, Image.Image]], timeout: float
    ) -> str | None:
        """A Korean one-sentence recommendation (emoji, at most 50 characters), or None."""
        ...
