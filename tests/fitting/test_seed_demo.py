from io import StringIO

from django.core.management import call_command
from rest_framework.authtoken.models import Token

from fitting.models import Item
from users.models import UserImage


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
