"""Create the demo user (prints its token), a staff user and the demo catalogue. Idempotent."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction
from rest_framework.authtoken.models import Token

from fitting import images
from fitting.models import Item
from users.models import UserImage

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
# file stem -> display name; the category is the stem's prefix.
CATALOGUE = {
    "top_navy_tshirt": "네이비 티셔츠",
    "top_white_shirt": "화이트 셔츠",
    "bottom_beige_chinos": "베이지 치노 팬츠",
    "bottom_blue_jeans": "블루 진",
    "outer_khaki_trench": "카키 트렌치코트",
    "outer_black_jacket": "블랙 재킷",
}
DEMO_USER = ("demo", "demo-password")
STAFF_USER = ("admin", "admin-password")


class Command(BaseCommand):
    help = "Create the demo user, a staff user, the demo catalogue and a sample photo (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        demo = self._user(*DEMO_USER)
        self._user(*STAFF_USER, is_staff=True, is_superuser=True)
        token, _ = Token.objects.get_or_create(user=demo)

        for stem, name in CATALOGUE.items():
            path = self._find(stem)
            data = path.read_bytes()
            digest = images.sha256_hex(data)
            if Item.objects.filter(content_hash=digest).exists():
                continue
            item = Item(name=name, category=stem.split("_", 1)[0], content_hash=digest)
            item.image.save(path.name, ContentFile(data), save=False)
            item.save()

        person = DEMO_DIR / "person_drawn.png"
        decoded = images.decode(person.read_bytes())
        data, extension = images.encode_upload(decoded)
        digest = images.sha256_hex(data)
        photo = UserImage.objects.filter(owner=demo, content_hash=digest).first()
        if photo is None:
            photo = UserImage(owner=demo, width=decoded.width, height=decoded.height, content_hash=digest)
            photo.image.save(f"person.{extension}", ContentFile(data), save=False)
            photo.save()

        self.stdout.write(f"demo user: {DEMO_USER[0]} / {DEMO_USER[1]}   staff: {STAFF_USER[0]} / {STAFF_USER[1]}")
        self.stdout.write(f"demo photo url: {photo.image.url}")
        self.stdout.write(f"items: {Item.objects.filter(is_active=True).count()} active")
        self.stdout.write(f"DEMO_TOKEN={token.key}")

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
