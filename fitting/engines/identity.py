"""Each engine's identity: its name, model and prompt version, defined once.

The engines read their identity from here, and so does the web process, which stores it
on each job as part of the result-cache key; the two can never disagree. This module is
light on purpose: knowing an identity never imports OpenCV, numpy or google-genai.

A job is pinned to the identity it was created with: a worker whose engine has another
identity refuses it (``ENGINE_MISMATCH``), and only an explicit reprocess switches it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from fitting import prompts

ENGINE_NAMES = ("local", "gemini", "vertex-tryon")
# The engines that generate their images with a provider's model (the local one composites).
GENERATIVE_ENGINES = ("gemini", "vertex-tryon")


@dataclass(frozen=True)
class EngineIdentity:
    name: str  # one of ENGINE_NAMES
    model: str  # the image model (or the local compositor's version)
    prompt_version: str  # change it whenever the output for the same inputs changes

    def __str__(self) -> str:
        return f"{self.name} (model {self.model}, prompts {self.prompt_version})"


# local-2: the face is chosen by plausibility, and a garment that cannot be placed fails its step.
LOCAL_IDENTITY = EngineIdentity("local", "local-preview-1", "local-2")


def gemini_identity(prompt_version: str | None = None) -> EngineIdentity:
    """The Gemini engine's identity: its image model is a setting, its prompts are versioned.

    ``prompt_version`` (one of ``prompts.PROMPT_SETS``) defaults to the default version.
    """
    return EngineIdentity("gemini", settings.GEMINI_IMAGE_MODEL, prompt_version or prompts.DEFAULT_PROMPT_VERSION)


def gemini_models() -> list[tuple[str, str]]:
    """(setting, model) of every provider model the Gemini engine calls: image steps, then the message."""
    return [("GEMINI_IMAGE_MODEL", settings.GEMINI_IMAGE_MODEL), ("GEMINI_TEXT_MODEL", settings.GEMINI_TEXT_MODEL)]


# The try-on model takes no prompt: its version stands for how the engine calls it (one
# garment per call, its parameters). tryon-1: the first.
TRYON_VERSION = "tryon-1"


def vertex_tryon_identity() -> EngineIdentity:
    """The Vertex AI Virtual Try-On engine's identity: its model is a setting."""
    return EngineIdentity("vertex-tryon", settings.VERTEX_TRYON_MODEL, TRYON_VERSION)


def vertex_tryon_models() -> list[tuple[str, str]]:
    """(setting, model) of every provider model the try-on engine calls: the steps, then the message."""
    return [("VERTEX_TRYON_MODEL", settings.VERTEX_TRYON_MODEL), ("GEMINI_TEXT_MODEL", settings.GEMINI_TEXT_MODEL)]


def engine_models(name: str) -> list[tuple[str, str]]:
    """(setting, model) of every provider model the engine called ``name`` calls; none for the local one."""
    if name == "gemini":
        return gemini_models()
    if name == "vertex-tryon":
        return vertex_tryon_models()
    return []


def prompt_versions_of(name: str) -> tuple[str, ...]:
    """The prompt versions the engine called ``name`` can run a job with (the first: its default).

    Only the Gemini engine has prompt variants; the others have one fixed version each.
    """
    if name == "gemini":
        default = prompts.DEFAULT_PROMPT_VERSION
        return (default, *(version for version in prompts.PROMPT_SETS if version != default))
    if name == "vertex-tryon":
        return (TRYON_VERSION,)
    if name == "local":
        return (LOCAL_IDENTITY.prompt_version,)
    raise ValueError(f"unknown engine {name!r}: one of {', '.join(ENGINE_NAMES)}")


def identity_of(name: str, prompt_version: str | None = None) -> EngineIdentity:
    """The identity the engine called ``name`` has in this process (with its settings).

    With ``prompt_version`` (one of ``prompt_versions_of(name)``; ValueError otherwise): the
    identity it has when it runs a job pinned to that version.
    """
    if prompt_version is not None and prompt_version not in prompt_versions_of(name):
        raise ValueError(f"the engine {name!r} has no prompt version {prompt_version!r}")
    if name == "gemini":
        return gemini_identity(prompt_version)
    if name == "vertex-tryon":
        return vertex_tryon_identity()
    if name == "local":
        return LOCAL_IDENTITY
    raise ValueError(f"unknown engine {name!r}: one of {', '.join(ENGINE_NAMES)}")
