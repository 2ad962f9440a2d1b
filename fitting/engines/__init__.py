"""The engine chosen by FITTING_ENGINE, built once per process.

The web process only needs the engine's identity (stored on each job and part of the
result-cache key), so ``engine_identity`` never imports an engine's heavy modules: it reads
``fitting.engines.identity``, as the engines themselves do.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings

from fitting.engines.base import Engine
from fitting.engines.identity import EngineIdentity, identity_of, prompt_versions_of


def engine_identity(name: str | None = None, *, prompt_version: str | None = None) -> EngineIdentity:
    """The identity of the engine ``get_engine(name, prompt_version=…)`` builds, without building it."""
    return identity_of(name or settings.FITTING_ENGINE, prompt_version)


def can_run(identity: EngineIdentity, name: str | None = None) -> bool:
    """Whether the engine called ``name`` (default: FITTING_ENGINE) runs a job pinned to ``identity``.

    The same engine and model, and a prompt version it has (the Gemini engine has several).
    """
    name = name or settings.FITTING_ENGINE
    if identity.name != name or identity.prompt_version not in prompt_versions_of(name):
        return False
    return identity_of(name, identity.prompt_version) == identity


def assign_identity(job_id, name: str | None = None) -> EngineIdentity:
    """The identity a new job with id ``job_id`` is pinned to: the engine's, with the prompt
    version FITTING_PROMPT_EXPERIMENT assigns it (Gemini only; without the setting, the default)."""
    from fitting import prompts

    name = name or settings.FITTING_ENGINE
    if name != "gemini":
        return identity_of(name)
    return identity_of(name, prompts.assign_prompt_version(job_id, settings.FITTING_PROMPT_EXPERIMENT))


@cache
def _build_engine(name: str, base_url: str, model: str, prompt_version: str | None) -> Engine:
    # Keyed by the settings it depends on, so a changed setting (tests) builds a new one.
    if name == "gemini":
        from fitting.engines.gemini import GeminiEngine

        return GeminiEngine(prompt_version)
    if name == "vertex-tryon":
        from fitting.engines.vertex_tryon import VertexTryOnEngine

        return VertexTryOnEngine()
    from fitting.engines.local import LocalEngine

    return LocalEngine()


def get_engine(name: str | None = None, *, prompt_version: str | None = None) -> Engine:
    """The engine called ``name`` (default: FITTING_ENGINE). The Google engines share one ``genai.Client``.

    With ``prompt_version``, the engine speaks that version's prompts when it has it (the
    pipeline passes the job's); one it does not have gives its default, whose identity then
    differs from the job's (ENGINE_MISMATCH).
    """
    name = name or settings.FITTING_ENGINE
    versions = prompt_versions_of(name)  # an unknown name is refused, never built as the local engine
    if name != "gemini" or prompt_version not in versions:
        prompt_version = None
    return _build_engine(name, settings.GEMINI_BASE_URL, settings.GEMINI_IMAGE_MODEL, prompt_version)
