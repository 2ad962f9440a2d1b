"""Create the demo user (prints a new token of it), a staff user and the demo catalogue. Idempotent.

Only with DEBUG on: the accounts it creates have published passwords.
"""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from fitting.models import Item
from fitting.services.items import item_image_check, item_save
from users.services import photo_create, token_issue

DEMO_DIR = Path(__file__).resolve().parents[2] / "samples"
# file stem -> display name; the category is the stem's prefix.
CATALOGUE = {
    "top_navy_tshirt": "네이비 티셔츠",
    "top_white_shirt": "화이트 셔츠",
    "bottom_beige_chinos": "베이지 치노 팬츠",
    "bottom_blue_jeans": "블루 진",
    "outer_khaki_trench": "카키 트렌치코트",
    "outer_black_jacket": "블랙 재킷",
    "dress_burgundy_midi": "버건디 미디 원피스",
    "shoes_brown_loafers": "브라운 로퍼",
}
DEMO_USER = ("demo", "demo-password")
STAFF_USER = ("admin", "admin-password")


class Command(BaseCommand):
    help = (
        "Create the demo user, a staff user, the demo catalogue and a sample photo (idempotent). "
        "Refused unless DEBUG is on: the accounts have published passwords."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates accounts with published passwords (demo, and the superuser admin): "
                "it runs only with DEBUG on (config.settings.local, or DJANGO_DEBUG=true). "
                "Create real staff accounts with createsuperuser."
            )
        demo = self._user(*DEMO_USER)
        self._user(*STAFF_USER, is_staff=True, is_superuser=True)
        # Tokens are stored as digests: each run issues a new one to print (earlier ones keep working).
        _, token = token_issue(user=demo)

        for stem, name in CATALOGUE.items():
            path = self._find(stem)
            if Item.objects.filter(content_hash=item_image_check(path.read_bytes())).exists():
                continue
            with path.open("rb") as handle:
                item_save(item=Item(name=name, category=stem.split("_", 1)[0]), image=File(handle, name=path.name))

        photo = demo.photos.order_by("created_at", "id").first()
        if photo is None:
            with (DEMO_DIR / "person_drawn.png").open("rb") as handle:
                photo = photo_create(owner=demo, upload=File(handle, name="person_drawn.png"))

        self.stdout.write(f"demo user: {DEMO_USER[0]} / {DEMO_USER[1]}   staff: {STAFF_USER[0]} / {STAFF_USER[1]}")
        self.stdout.write(f"demo photo url: {photo.image.url}")
        self.stdout.write(f"items: {Item.objects.filter(is_active=True).count()} active")
        self.stdout.write(f"DEMO_TOKEN={token}")

    def _user(self, username: str, password: str, **flags):
        user, created = get_user_model().objects.get_or_create(username=username, defaults=flags)
        if created:
            user.set_password(password)
            user.save()
        return user

    def _find(self, stem: str) -> Path:
        matches = sorted(DEMO_DIR.glob(f"{stem}.*"))
        if not matches:
            raise FileNotFoundError(f"demo image {stem}.* missing from {DEMO_DIR}")
        return matches[0]
