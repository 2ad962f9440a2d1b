"""The engine chosen by FITTING_ENGINE, built once per process.

The web process only needs the engine's identity (stored on each job and part of the
result-cache key), so ``engine_identity`` never imports an engine's heavy modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.conf import settings

from fitting.engines.base import Engine


@dataclass(frozen=True)
class EngineIdentity:
    name: str
    model: str
    prompt_version: str


LOCAL_IDENTITY = EngineIdentity("local", "local-preview-1", "local-1")


def engine_identity() -> EngineIdentity:
    if settings.FITTING_ENGINE == "gemini":
        from fitting.prompts import PROMPT_VERSION

        return EngineIdentity("gemini", settings.GEMINI_IMAGE_MODEL, PROMPT_VERSION)
    return LOCAL_IDENTITY


@cache
def _build_engine(name: str, base_url: str, model: str) -> Engine:
    # Keyed by the settings it depends on, so a changed setting (tests) builds a new one.
    if name == "gemini":
        from fitting.engines.gemini import GeminiEngine

        return GeminiEngine()
    from fitting.engines.local import LocalEngine

    return LocalEngine()


def get_engine() -> Engine:
    """The process's engine. The Gemini engine keeps one ``genai.Client`` referenced."""
    return _build_engine(settings.FITTING_ENGINE, settings.GEMINI_BASE_URL, settings.GEMINI_IMAGE_MODEL)
