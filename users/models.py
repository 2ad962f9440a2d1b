import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

PHOTOS_DIR = "photos"  # where photo files live in the media storage (core.media registers it)


def photo_upload_to(instance: "UserImage", filename: str) -> str:
    # Random, unguessable names: the URL is the only handle a client has on the file.
    extension = filename.rsplit(".", 1)[-1].lower()
    return f"{PHOTOS_DIR}/{uuid.uuid4().hex}.{extension}"


class UserImage(models.Model):
    """A user's uploaded person photo, stored upright and re-encoded."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="photos", verbose_name=_("owner")
    )
    image = models.ImageField(_("image"), upload_to=photo_upload_to)
    width = models.PositiveIntegerField(_("width"))
    height = models.PositiveIntegerField(_("height"))
    content_hash = models.CharField(_("content hash"), max_length=64, db_index=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("person photo")
        verbose_name_plural = _("person photos")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="userimage_owner_created")]

    def __str__(self) -> str:
        return f"{self.owner} {self.image.name}"


class UserLimits(models.Model):
    """Staff's per-user overrides of the service's limits (none: the settings apply)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="limits"
    )
    daily_job_quota = models.PositiveIntegerField(
        _("daily fitting quota"),
        null=True,
        blank=True,
        help_text=_("Fitting jobs a day that call the engine. Empty: the default (FITTING_DAILY_QUOTA); 0: no limit."),
    )

    class Meta:
        verbose_name = _("limits")
        verbose_name_plural = _("limits")

    def __str__(self) -> str:
        return str(self.user)
