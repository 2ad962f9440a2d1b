"""Photos and users are deleted through the services that know their jobs (files too)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from fitting.errors import (
    PhotoInUseError,
)
from fitting.models import (
    FittingResult,
    Status,
)
from fitting.services.erasure import photo_delete, user_delete
from users.admin import UserImageAdmin, UserLimitsInline
from users.models import UserImage

admin.site.unregister(UserImage)


@admin.register(UserImage)
class ErasingUserImageAdmin(UserImageAdmin):
    """The photo admin of ``users``, deleting through ``photo_delete``: the file goes, a photo in use stays."""

    def get_deleted_objects(self, objs, request):
        """Photos a processing job uses are shown as protected: the page refuses to delete them."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        running = FittingResult.objects.filter(user_image__in=objs, status=Status.PROCESSING)
        protected = [
            *protected,
            *(
                _("Job %(job)s is still processing with this photo (PHOTO_IN_USE).") % {"job": str(job_id)[:8]}
                for job_id in running.values_list("id", flat=True)
            ),
        ]
        return deleted, counts, perms_needed, protected

    def delete_model(self, request, obj):
        photo_delete(photo=obj)

    def delete_queryset(self, request, queryset):
        for photo in queryset:
            try:
                photo_delete(photo=photo)
            except PhotoInUseError as exc:  # a job started since the confirmation page
                self.message_user(request, f"{photo}: {exc.message}", messages.ERROR)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except PhotoInUseError as exc:  # a job started since the confirmation page
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:users_userimage_change", args=[object_id]))


User = get_user_model()


admin.site.unregister(User)


@admin.register(User)
class ErasingUserAdmin(UserAdmin):
    """Django's user admin, deleting through ``user_delete``: photos, jobs and their files go too.

    Staff set a user's own limits (the daily fitting quota) on the user's page.
    """

    inlines = (*UserAdmin.inlines, UserLimitsInline)

    def delete_model(self, request, obj):
        user_delete(user=obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            user_delete(user=user)
