"""Staff pages of the catalogue: items are created and changed through the item service."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext_lazy as _

from core.admin import thumbnail
from core.errors import ServiceError
from fitting.models import (
    Item,
)
from fitting.services.items import item_image_check, item_save


class ItemAdminForm(forms.ModelForm):
    class Meta:
        model = Item
        fields = ("name", "category", "image", "is_active", "external_id")

    def clean_image(self):
        image = self.cleaned_data.get("image")
        if isinstance(image, UploadedFile):  # a new upload, not the file already stored
            image.seek(0)
            try:
                item_image_check(image.read())
            except ServiceError as exc:
                raise ValidationError(exc.message, code=exc.code) from exc
        return image


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    form = ItemAdminForm
    list_display = ("preview", "name", "category", "is_active", "external_id", "created_at")
    list_display_links = ("preview", "name")
    list_editable = ("is_active",)
    list_filter = ("category", "is_active")
    search_fields = ("name", "external_id")
    readonly_fields = ("preview", "content_hash", "created_at")
    fields = ("name", "category", "image", "preview", "is_active", "external_id", "content_hash", "created_at")

    def save_model(self, request, obj: Item, form, change: bool) -> None:
        # A new image goes through the service (checked, hashed, stored); otherwise a plain save.
        item_save(item=obj, image=form.cleaned_data["image"] if "image" in form.changed_data else None)

    @admin.display(description=_("image"))
    def preview(self, obj: Item) -> str:
        return thumbnail(obj.image, link=False)
