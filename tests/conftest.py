import pytest
from rest_framework.test import APIClient

from tests.conftest_gemini import *  # noqa: F403
from tests.e2e import Stack
from tests.factories import make_item, make_photo, make_user
from tests.s3 import *  # noqa: F403


@pytest.fixture(autouse=True)
def media_root(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def user(db):
    return make_user("alice")


@pytest.fixture
def other_user(db):
    return make_user("bob")


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def photo(user):
    return make_photo(user)


@pytest.fixture
def catalogue(db):
    return {
        "top": make_item("top", "Navy tee", (20, 30, 90)),
        "bottom": make_item("bottom", "Beige chinos", (200, 180, 140)),
        "outer": make_item("outer", "Khaki coat", (120, 110, 60)),
    }


@pytest.fixture
def staff_user(db):
    return make_user("support", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(client, staff_user):
    """The test client logged in as a superuser, in English (the default language is Korean)."""
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    client.force_login(staff_user)
    return client


@pytest.fixture
def stack(tmp_path):
    """The service as separate processes (web and qcluster) on a fresh database (tests/servers.py)."""
    stack = Stack(tmp_path).prepare()  # local settings: a webhook receiver on 127.0.0.1 is allowed
    stack.start_web()
    stack.start_cluster()
    yield stack
    stack.stop()
