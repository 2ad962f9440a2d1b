from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.authtoken.models import Token

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
    token = Token.objects.get(user__username="demo")
    assert f"DEMO_TOKEN={token.key}" in first.getvalue()
    assert f"DEMO_TOKEN={token.key}" in second.getvalue()
    counts = {c: Item.objects.filter(category=c).count() for c in ("top", "bottom", "outer")}
    assert counts == {"top": 2, "bottom": 2, "outer": 2}
    assert UserImage.objects.filter(owner__username="demo").count() == 1
    assert token.user.check_password("demo-password")


def test_seeded_items_are_served(db, client):
    call_command("seed_demo", stdout=StringIO())
    for item in Item.objects.all():
        assert client.get(item.image.url).status_code == 200
