"""The engine interface: apply one garment; write a message.

An engine is built once per worker process (``fitting.engines.get_engine``) and is
used by one job at a time. Images cross this boundary as decoded Pillow images so the
pipeline decodes each input once per job and keeps intermediates in memory.

The pipeline owns what is common to every engine: it brings each step's image to the
canvas size, and it sets the message's time budget and turns a failed message into none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from fitting.engines.identity import EngineIdentity

CATEGORIES = ("top", "dress", "bottom", "outer", "shoes")  # also the fixed step order (fitting.models.STEP_ORDER)
# Starting an attempt with less time than this left is pointless: no model answers so fast.
MIN_ATTEMPT_SECONDS = 0.25

# Asked before an engine sends a request again (a retry): False when the job no longer wants
# the answer (canceled, reprocessed, deleted). The pipeline passes one; None means always.
KeepGoing = Callable[[], bool]


class StepAbandoned(Exception):
    """The engine stopped before a retry because ``keep_going`` said the job no longer wants it."""


@dataclass
class StepResult:
    """What one garment step produced: an image of any size and mode, plus usage.

    The pipeline brings ``image`` to the canvas size (``core.images.to_canvas``).
    """

    image: Image.Image
    usage: dict[str, int] = field(default_factory=dict)  # prompt/candidates/total tokens


@dataclass(frozen=True)
class AppliedGarment:
    """One garment of the outfit: its category and its decoded product photo.

    ``image`` is the very object the pipeline passed to ``apply_garment`` for this step
    (when the step ran in this job attempt), so an engine may reuse what it derived from it.
    """

    category: str
    image: Image.Image


@dataclass(frozen=True)
class Outfit:
    """What the message is about: the final, canvas-sized image and the garments in step order."""

    image: Image.Image
    garments: tuple[AppliedGarment, ...]


class Engine(Protocol):
    # Name, model and prompt version, read from ``fitting.engines.identity``: the job stores
    # the same identity (``fitting.engines.engine_identity``) as part of the result-cache key.
    identity: EngineIdentity
    # True when the same inputs always give the same answer (the local engine): the quality
    # gate checks its answers but never asks again. Read with getattr(engine, "deterministic", False).
    deterministic: bool

    def apply_garment(
        self,
        *,
        person: Image.Image,
        garment: Image.Image,
        category: str,
        canvas_size: tuple[int, int],
        timeout: float,
        keep_going: KeepGoing | None = None,
        seed: int | None = None,
    ) -> StepResult:
        """Dress ``person`` in ``garment`` (one ``category``).

        ``person`` is RGB and already ``canvas_size``: the photo, or the previous step's
        output. The result's image may be of any size; the pipeline brings it to the canvas.
        ``timeout`` is what is left of the job's deadline, in seconds. Raises a
        ``fitting.errors.JobError`` subclass on failure (``DeadlineExceeded`` past the
        deadline). An engine that sends a request more than once asks ``keep_going`` before
        each request after the first, and raises ``StepAbandoned`` when it answers False.
        ``seed``: the quality gate's retry of a step sends a new one, so a model that takes a
        seed answers differently; an engine without one ignores it.
        """
        ...

    def write_message(self, *, outfit: Outfit, timeout: float, keep_going: KeepGoing | None = None) -> str | None:
        """A Korean one-sentence recommendation (emoji, at most 50 characters) for ``outfit``.

        Done within ``timeout`` seconds (the pipeline's budget for the message, at least
        ``MIN_ATTEMPT_SECONDS``). Returns None when there is nothing to say, and raises on
        failure (a ``JobError`` subclass, ``DeadlineExceeded`` when out of time): the
        pipeline logs it and completes the job without a message.
        """
        ...
