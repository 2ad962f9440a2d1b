"""The engine chosen by FITTING_ENGINE, built once per process.

The web process only needs the engine's identity (stored on each job and part of the
result-cache key), so ``engine_identity`` never imports an engine's heavy modules: it reads
``fitting.engines.identity``, as the engines themselves do.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings

from fitting.engines.base import Engine
from fitting.engines.identity import EngineIdentity, identity_of


def engine_identity(name: str | None = None) -> EngineIdentity:
    """The identity of the engine ``get_engine(name)`` builds, without building it."""
    return identity_of(name or settings.FITTING_ENGINE)


@cache
def _build_engine(name: str, base_url: str, model: str) -> Engine:
    # Keyed by the settings it depends on, so a changed setting (tests) builds a new one.
    if name == "gemini":
        from fitting.engines.gemini import GeminiEngine

        return GeminiEngine()
    if name == "vertex-tryon":
        from fitting.engines.vertex_tryon import VertexTryOnEngine

        return VertexTryOnEngine()
    from fitting.engines.local import LocalEngine

    return LocalEngine()


def get_engine(name: str | None = None) -> Engine:
    """The engine called ``name`` (default: FITTING_ENGINE). The Google engines share one ``genai.Client``."""
    name = name or settings.FITTING_ENGINE
    identity_of(name)  # an unknown name is refused, never built as the local engine
    return _build_engine(name, settings.GEMINI_BASE_URL, settings.GEMINI_IMAGE_MODEL)
