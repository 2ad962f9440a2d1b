"""The engine chosen by FITTING_ENGINE, built once per process.

The web process only needs the engine's identity (stored on each job and part of the
result-cache key), so ``engine_identity`` never imports an engine's heavy modules: it reads
``fitting.engines.identity``, as the engines themselves do.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings

from fitting.engines.base import Engine
from fitting.engines.identity import LOCAL_IDENTITY, EngineIdentity, gemini_identity


def engine_identity() -> EngineIdentity:
    """The identity of the engine ``get_engine`` builds, without building it."""
    if settings.FITTING_ENGINE == "gemini":
        return gemini_identity()
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
