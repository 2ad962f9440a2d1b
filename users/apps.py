from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class UsersConfig(AppConfig):
    name = "users"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = _("Users and photos")

    def ready(self):
        from core.media import MediaKind, media_register
        from users import lockout  # noqa: F401  (connects the successful-login receiver)
        from users.models import PHOTOS_DIR, UserImage

        media_register(
            MediaKind(PHOTOS_DIR, UserImage, owner_lookup="owner", staff_permissions=("users.view_userimage",))
        )
