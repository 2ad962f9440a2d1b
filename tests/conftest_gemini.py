"""The ``fake_gemini`` fixture: a fake Gemini server the real client is pointed at.

Import it into ``tests/conftest.py`` with ``from tests.conftest_gemini import *``.
"""

from __future__ import annotations

import pytest

from fitting.engines import gemini
from tests.fakegemini import FakeGemini

__all__ = ["fake_gemini"]


@pytest.fixture
def fake_gemini(settings):
    """A running fake Gemini server; settings point the Gemini engine at it.

    Retry backoff is made short so retry tests take milliseconds, not seconds.
    """
    fake = FakeGemini().start()
    settings.FITTING_ENGINE = "gemini"
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = fake.base_url
    settings.GEMINI_API_VERSION = "v1beta"
    settings.GEMINI_RETRY_INITIAL_DELAY = 0.02
    settings.GEMINI_RETRY_MAX_DELAY = 0.1
    settings.GEMINI_RETRY_ATTEMPTS = 5
    gemini.reset_client()
    yield fake
    fake.stop()
    gemini.reset_client()
    assert not fake.errors, f"the fake Gemini server could not handle a request: {fake.errors}"
