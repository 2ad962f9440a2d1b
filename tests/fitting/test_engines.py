"""The engine's identity: the one the worker's engine reports is the one the web stores on jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fitting import prompts
from fitting.engines import engine_identity, get_engine
from fitting.engines.identity import EngineIdentity

ROOT = Path(__file__).resolve().parents[2]


def test_the_local_engine_reports_the_identity_jobs_store(settings):
    settings.FITTING_ENGINE = "local"
    assert get_engine().identity == engine_identity() == EngineIdentity("local", "local-preview-1", "local-2")


def test_the_gemini_engine_reports_the_identity_jobs_store(fake_gemini, settings):
    settings.GEMINI_IMAGE_MODEL = "fake-image-model"
    expected = EngineIdentity("gemini", "fake-image-model", prompts.PROMPT_VERSION)
    assert get_engine().identity == engine_identity() == expected
    settings.GEMINI_IMAGE_MODEL = "another-image-model"  # a changed setting changes both
    assert (
        get_engine().identity
        == engine_identity()
        == EngineIdentity("gemini", "another-image-model", prompts.PROMPT_VERSION)
    )


@pytest.mark.parametrize("engine", ["local", "gemini"])
def test_the_web_knows_the_identity_without_the_engines_modules(engine):
    """The web process (every URL's view loaded) reads the identity without OpenCV or google-genai."""
    script = (
        "import sys, django\n"
        "django.setup()\n"
        "import config.urls\n"
        "from fitting.engines import engine_identity\n"
        "print(engine_identity().name)\n"
        "heavy = sorted(m for m in ('cv2', 'numpy', 'google.genai', 'fitting.engines.local', 'fitting.engines.gemini')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "FITTING_ENGINE": engine,
        "GEMINI_API_KEY": "test-key",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    name, heavy = done.stdout.splitlines()
    assert name == engine
    assert heavy == ""
