"""Each engine's identity: its name, model and prompt version, defined once.

The engines read their identity from here, and so does the web process, which stores it
on each job as part of the result-cache key; the two can never disagree. This module is
light on purpose: knowing an identity never imports OpenCV, numpy or google-genai.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from fitting import prompts


@dataclass(frozen=True)
class EngineIdentity:
    name: str  # "local" or "gemini"
    model: str  # the image model (or the local compositor's version)
    prompt_version: str  # change it whenever the output for the same inputs changes


LOCAL_IDENTITY = EngineIdentity("local", "local-preview-1", "local-1")


def gemini_identity() -> EngineIdentity:
    """The Gemini engine's identity: its image model is a setting, its prompts are versioned."""
    return EngineIdentity("gemini", settings.GEMINI_IMAGE_MODEL, prompts.PROMPT_VERSION)
