"""The Vertex AI Virtual Try-On engine: Google's model built for try-on, one garment per call.

Each step is one ``client.models.recontext_image`` call (``…/models/<VERTEX_TRYON_MODEL>:predict``
on Vertex AI) with the current person image and one product image: the service's sequential
design, since the model takes one product image per call. The message is the Gemini engine's
(the Gemini text model, through the same Vertex AI client), and so are the client, the retries
of transient failures within the job's deadline and the mapping of HTTP errors
(``gemini.call_with_retries``).

The model runs only on Vertex AI (a project and a location, or an express-mode key): the
settings refuse any other configuration at start. Every image it makes carries Google's
invisible SynthID watermark unless VERTEX_TRYON_WATERMARK is turned off.
"""

from __future__ import annotations

import logging

from django.conf import settings
from google.genai import types
from PIL import Image

import fitting.engines.gemini as gemini
from core import images
from core.errors import ServiceError
from fitting.engines.base import KeepGoing, StepResult
from fitting.engines.gemini import GeminiEngine, call_with_retries, encode_input, get_client
from fitting.engines.identity import EngineIdentity, vertex_tryon_identity
from fitting.errors import EngineBadImageError, EngineBlockedError, EngineNoImageError

logger = logging.getLogger(__name__)

# The prompt version of the message (``GeminiEngine.write_message``): pinned, part of TRYON_VERSION.
TRYON_MESSAGE_PROMPT_VERSION = "v4"
# Lossless between steps: each step's output is the next one's person image.
OUTPUT_MIME_TYPE = "image/png"


class VertexTryOnEngine(GeminiEngine):
    """Steps by the try-on model; the message, the client and the retries are the Gemini engine's."""

    @property
    def identity(self) -> EngineIdentity:
        return vertex_tryon_identity()  # read at each call: the model is a setting

    @property
    def message_prompt_version(self) -> str:
        # Its message is the seed's (v4's) for good: its identity (TRYON_VERSION) names no prompt
        # version, so a prompt experiment never changes it.
        return TRYON_MESSAGE_PROMPT_VERSION

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
        """The try-on model's image of ``person`` wearing ``garment`` (any size: the pipeline fits it)."""
        return self.apply_garment_samples(
            person=person,
            garment=garment,
            category=category,
            canvas_size=canvas_size,
            timeout=timeout,
            keep_going=keep_going,
            seeds=[seed],
        )[0]

    def sent_seed(self, seeds: list[int | None]) -> int | None:
        """The seed a call for ``seeds`` sends: the first, or None with the watermark on.

        Vertex AI refuses a seed with ``add_watermark``; the pipeline records this on the
        attempts, so staff never see a seed the model did not get.
        """
        return None if settings.VERTEX_TRYON_WATERMARK else seeds[0]

    def apply_garment_samples(
        self,
        *,
        person: Image.Image,
        garment: Image.Image,
        category: str,
        canvas_size: tuple[int, int],
        timeout: float,
        seeds: list[int | None],
        keep_going: KeepGoing | None = None,
    ) -> list[StepResult]:
        """``len(seeds)`` candidates in one call (``number_of_images``), in the model's order.

        The model needs no category or prompt: it finds what the product is and where it goes.
        It takes one seed per call: ``seeds[0]`` is sent, and the model's k-th image of that
        seed is candidate k. The seed is sent only without the watermark: Vertex AI refuses a
        seed with ``add_watermark``, so a watermarked call relies on the model's own
        randomness (a seeded job is then not repeatable; the job keeps its seed, its attempts
        record none: ``sent_seed``).
        Images the safety filter took are left out (and logged); none left is ENGINE_BLOCKED.
        """
        deadline = gemini._now() + timeout  # the Gemini engine's clock (tests replace it)
        model = self.identity.model
        source = types.RecontextImageSource(
            person_image=_image(person),
            product_images=[types.ProductImage(product_image=_image(garment))],
        )
        config = tryon_config(number_of_images=len(seeds))
        config.seed = self.sent_seed(seeds)
        client = get_client()

        def call(http_options: types.HttpOptions) -> types.RecontextImageResponse:
            per_attempt = config.model_copy(update={"http_options": http_options})
            return client.models.recontext_image(model=model, source=source, config=per_attempt)

        response = call_with_retries(
            call, model=model, setting="VERTEX_TRYON_MODEL", deadline=deadline, keep_going=keep_going
        )
        # Billed per image, not per token: no token usage to report.
        return [StepResult(image, usage={}) for image in read_images(response)]


def tryon_config(*, number_of_images: int = 1) -> types.RecontextImageConfig:
    """The call's parameters, from the settings: ``number_of_images`` images, watermarked unless turned off."""
    return types.RecontextImageConfig(
        number_of_images=number_of_images,
        base_steps=settings.VERTEX_TRYON_BASE_STEPS or None,  # None: the model's default
        person_generation=types.PersonGeneration(settings.VERTEX_TRYON_PERSON_GENERATION),
        safety_filter_level=types.SafetyFilterLevel(settings.VERTEX_TRYON_SAFETY_FILTER_LEVEL),
        output_mime_type=OUTPUT_MIME_TYPE,
        add_watermark=settings.VERTEX_TRYON_WATERMARK,
    )


def _image(image: Image.Image) -> types.Image:
    data, mime_type = encode_input(image)
    return types.Image(image_bytes=data, mime_type=mime_type)


def read_images(response: types.RecontextImageResponse) -> list[Image.Image]:
    """The generated images (at least one); ENGINE_BLOCKED when the safety filter took them all.

    When it took only some, the others go on and the filtered ones are logged (how many, and why).
    """
    generated = response.generated_images or []
    found = [g.image.image_bytes for g in generated if g.image and g.image.image_bytes]
    reasons = [" ".join(g.rai_filtered_reason.split())[:200] for g in generated if g.rai_filtered_reason]
    if not found:
        if reasons:
            raise EngineBlockedError(f"The try-on model filtered the image ({reasons[0]}).")
        raise EngineNoImageError("The try-on model answered without an image.")
    if reasons:
        logger.warning(
            "the try-on model's safety filter took %s of %s images: %s",
            len(reasons),
            len(generated),
            "; ".join(dict.fromkeys(reasons)),
        )
    try:
        return [images.decode(data) for data in found]
    except ServiceError as exc:
        raise EngineBadImageError() from exc


__all__ = ["VertexTryOnEngine", "read_images", "tryon_config"]
