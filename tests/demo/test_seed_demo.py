import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from knox.models import AuthToken
from rest_framework.test import APIClient

from fitting.models import Item
from users.models import UserImage


@pytest.fixture(autouse=True)
def debug_on(settings):
    settings.DEBUG = True  # seed_demo's condition (pytest-django turns DEBUG off)


def test_seed_demo_is_refused_with_debug_off(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match=r"published passwords.*only with DEBUG on"):
        call_command("seed_demo", stdout=StringIO())
    assert not get_user_model().objects.exists()
    assert not Item.objects.exists()


def test_seed_demo_is_idempotent(db):
    first, second = StringIO(), StringIO()
    call_command("seed_demo", stdout=first)
    call_command("seed_demo", stdout=second)
    # Each run prints a new token (only digests are stored); both work.
    keys = [re.search(r"^DEMO_TOKEN=(\w+)$", out.getvalue(), re.MULTILINE).group(1) for out in (first, second)]
    assert keys[0] != keys[1]
    for key in keys:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/users/me/photos").status_code == 200
    assert AuthToken.objects.filter(user__username="demo").count() == 2
    counts = {c: Item.objects.filter(category=c).count() for c in ("top", "bottom", "outer", "dress", "shoes")}
    assert counts == {"top": 2, "bottom": 2, "outer": 2, "dress": 1, "shoes": 1}
    assert Item.objects.count() == 8
    assert UserImage.objects.filter(owner__username="demo").count() == 1
    assert get_user_model().objects.get(username="demo").check_password("demo-password")


def test_seeded_items_are_served(db, client):
    call_command("seed_demo", stdout=StringIO())
    for item in Item.objects.all():
        assert client.get(item.image.url).status_code == 200
