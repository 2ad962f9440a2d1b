from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from knox import admin as knox_admin  # registers AuthToken, unregistered below

from core.admin import thumbnail
from users.models import UserImage, UserLimits


@admin.register(UserImage)
class UserImageAdmin(admin.ModelAdmin):
    """Users' photos, as uploaded through the API (re-encoded, upright): view or delete only.

    Deleting goes through the erasure service, which knows the jobs: ``fitting.admin`` registers
    a subclass in its place.
    """

    list_display = ("preview", "owner", "size", "created_at")
    list_select_related = ("owner",)
    search_fields = ("owner__username",)
    date_hierarchy = "created_at"
    fields = ("owner", "preview", "size", "content_hash", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # photos come in through the upload API, which normalises them

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description=_("photo"))
    def preview(self, obj: UserImage) -> str:
        return thumbnail(obj.image)

    @admin.display(description=_("size"))
    def size(self, obj: UserImage) -> str:
        return f"{obj.width}×{obj.height}"


class UserLimitsInline(admin.StackedInline):
    """Per-user limits on the user's page (``fitting.admin`` adds it to the user admin)."""

    model = UserLimits
    can_delete = False
    fields = ("daily_job_quota",)
    verbose_name_plural = _("limits")


# knox registers its tokens in English, with bare digests and a form that mints tokens for any
# user. Staff end a user's tokens by making the user inactive (they stop at once) or by deleting
# the account; users log out with POST /api/auth/logout(-all).
admin.site.unregister(knox_admin.models.AuthToken)
