"""Staff views of jobs and the catalogue.

Jobs are read-only here: the only writes are reprocessing, through the same service as
``reprocess_failed_fittings``, and deletion, through the same service as the API's (files too).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.admin import thumbnail
from core.errors import (
    JobEngineMismatchError,
    JobFinishedError,
    JobPhotoDeletedError,
    NotReprocessableError,
    PhotoInUseError,
    ServiceError,
)
from fitting import costs
from fitting.engines import engine_identity
from fitting.models import (
    Category,
    FittingResult,
    FittingResultImage,
    FittingResultItem,
    ImageStep,
    Item,
    Status,
    WebhookAttempt,
    WebhookDelivery,
)
from fitting.selectors import fitting_with_id_prefix
from fitting.services import (
    REPROCESSABLE,
    fitting_cancel,
    fitting_delete,
    fitting_reprocess,
    item_image_check,
    item_save,
    photo_delete,
    user_delete,
)
from fitting.webhooks import webhook_redeliver
from users.admin import UserImageAdmin, UserLimitsInline
from users.models import UserImage

# The admin names the service, in the staff's language (Korean by default).
admin.site.site_header = _("Virtual fitting administration")
admin.site.site_title = _("Virtual fitting admin")
admin.site.index_title = _("Service administration")
# No app list beside every page: the job list needs the width (readable at 1400 px).
admin.site.enable_nav_sidebar = False

STATUS_COLOURS = {
    Status.PROCESSING: "#2f6fbf",
    Status.COMPLETED: "#2e8540",
    Status.FAILED: "#c0392b",
    Status.TIMEOUT: "#d27f0a",
    Status.CANCELED: "#6c757d",
}
# A job id or the start of one: at least 4 hex digits, hyphens anywhere (as pasted from logs).
_JOB_ID_PREFIX = re.compile(r"^[0-9a-f-]*$")
_MIN_PREFIX = 4


def _job_id_hex(term: str) -> str | None:
    """The hex digits of ``term`` when it can be (the start of) a job id, else None."""
    term = term.strip().lower()
    if not _JOB_ID_PREFIX.match(term):
        return None
    digits = term.replace("-", "")
    return digits if _MIN_PREFIX <= len(digits) <= 32 else None


def _format_cost(cost: Decimal | None) -> str:
    """USD with four decimals (an image is about $0.039); "-" for a model without a price."""
    return "-" if cost is None else f"${cost:.4f}"


def _format_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m {seconds:02d}s"


# --- jobs -----------------------------------------------------------------------------------
class _ReadOnlyInline(admin.TabularInline):
    """Rows shown, never added, changed or deleted here."""

    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _JobInline(_ReadOnlyInline):
    """Read-only rows of a job, shown to whoever may see the job."""

    template = "admin/fitting/tabular_plain.html"  # no "<job id> top" caption over each row
    show_change_link = False

    def has_view_permission(self, request, obj=None):
        return self.admin_site.get_model_admin(self.parent_model).has_view_permission(request, obj)


class FittingResultItemInline(_JobInline):
    model = FittingResultItem
    fields = ("order", "category", "item", "garment")
    readonly_fields = fields
    verbose_name_plural = _("items")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("item")

    @admin.display(description=_("image"))
    def garment(self, obj: FittingResultItem) -> str:
        return thumbnail(obj.item.image)


class FittingResultImageInline(_JobInline):
    model = FittingResultImage
    fields = ("step", "size", "preview", "created_at")
    readonly_fields = fields
    verbose_name_plural = _("step images")

    @admin.display(description=_("size"))
    def size(self, obj: FittingResultImage) -> str:
        return f"{obj.width}×{obj.height}"

    @admin.display(description=_("image"))
    def preview(self, obj: FittingResultImage) -> str:
        return thumbnail(obj.image)


def _attempts_table(delivery: WebhookDelivery) -> SafeString | str:
    """Every attempt of a delivery: when, how long, the answer (or the error), the outcome."""
    made = list(delivery.attempts.all())
    if not made:
        return "-"
    head = format_html_join(
        "",
        "<th>{}</th>",
        ((label,) for label in ("#", _("started"), _("duration"), _("answer"), _("outcome"), _("error"))),
    )
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                a.number,
                a.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                a.duration_ms,
                a.status_code or "-",
                a.get_outcome_display(),
                Truncator(a.error).chars(120) or "-",
            )
            for a in made
        ),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, rows)


class WebhookDeliveryInline(_JobInline):
    model = WebhookDelivery
    fields = ("event", "webhook_id", "status", "attempt_count", "next_attempt_at", "attempt_log", "created_at")
    readonly_fields = fields
    verbose_name_plural = _("webhook deliveries")
    show_change_link = True  # the delivery's page: its payload and the redeliver action

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("attempts")

    @admin.display(description=_("attempts"))
    def attempt_log(self, obj: WebhookDelivery) -> SafeString | str:
        return _attempts_table(obj)


def _redeliver(modeladmin, request: HttpRequest, deliveries) -> None:
    """Send each delivery again (same payload and webhook-id, a new attempt); report what was not."""
    done, busy = 0, []
    for delivery in deliveries:
        if webhook_redeliver(delivery=delivery):
            done += 1
        else:
            busy.append(delivery)
    if done:
        modeladmin.message_user(
            request,
            ngettext("%(count)d webhook queued for redelivery.", "%(count)d webhooks queued for redelivery.", done)
            % {"count": done},
            messages.SUCCESS,
        )
    if busy:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d webhook skipped: an attempt of it is running now (%(ids)s).",
                "%(count)d webhooks skipped: an attempt of each is running now (%(ids)s).",
                len(busy),
            )
            % {"count": len(busy), "ids": ", ".join(d.webhook_id for d in busy)},
            messages.WARNING,
        )


def _reprocess(
    modeladmin: FittingResultAdmin, request: HttpRequest, jobs, *, restart: bool, switch: bool = False
) -> None:
    """Reprocess each job; skip, with a warning, those that are not failed, timed out or canceled.

    A job pinned to another engine than this server's (FITTING_ENGINE, its model and prompt
    version) is skipped too, unless ``switch``: then it moves to this server's engine and
    restarts from scratch (``fitting_reprocess(engine=...)``).
    """
    done, skipped, photo_deleted, other_engine = 0, [], [], []
    for job in jobs:
        try:
            # Staff pick the jobs one by one: a canceled job among them is run again too.
            fitting_reprocess(
                job=job, restart=restart, engine=settings.FITTING_ENGINE if switch else None, allow_canceled=True
            )
        except JobPhotoDeletedError:
            photo_deleted.append(job)
        except JobEngineMismatchError:
            other_engine.append(job)
        except NotReprocessableError:
            skipped.append(job)
        else:
            done += 1
    if switch:
        how = _("from scratch with this server's engine")
    else:
        how = _("from scratch") if restart else _("resuming from the failed step")
    if done:
        modeladmin.message_user(
            request,
            ngettext("%(count)d job reprocessed, %(how)s.", "%(count)d jobs reprocessed, %(how)s.", done)
            % {"count": done, "how": how},
            messages.SUCCESS,
        )
    if skipped:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d job skipped: only failed, timed-out or canceled jobs can be reprocessed (%(ids)s).",
                "%(count)d jobs skipped: only failed, timed-out or canceled jobs can be reprocessed (%(ids)s).",
                len(skipped),
            )
            % {"count": len(skipped), "ids": ", ".join(f"{str(j.id)[:8]} {j.get_status_display()}" for j in skipped)},
            messages.WARNING,
        )
    if photo_deleted:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d job skipped: its photo was deleted by its owner (%(ids)s).",
                "%(count)d jobs skipped: their photos were deleted by their owners (%(ids)s).",
                len(photo_deleted),
            )
            % {"count": len(photo_deleted), "ids": ", ".join(str(j.id)[:8] for j in photo_deleted)},
            messages.WARNING,
        )
    if other_engine:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d job skipped: it was made by another engine than this server's %(engine)s (%(ids)s). "
                "Reprocess it with this server's engine to switch it.",
                "%(count)d jobs skipped: they were made by another engine than this server's %(engine)s (%(ids)s). "
                "Reprocess them with this server's engine to switch them.",
                len(other_engine),
            )
            % {
                "count": len(other_engine),
                "engine": engine_identity(),
                "ids": ", ".join(f"{str(j.id)[:8]} {j.engine_identity}" for j in other_engine),
            },
            messages.WARNING,
        )


@admin.register(FittingResult)
class FittingResultAdmin(admin.ModelAdmin):
    # Readable at 1400 px: short columns that do not wrap, the message cut with a tooltip.
    list_display = (
        "short_id",
        "owner",
        "status_badge",
        "step",
        "error",
        "duration",
        "message",
        "cost",
        "created_at",
    )
    list_filter = ("status", "failed_step", "error_code", "engine", ("created_at", admin.DateFieldListFilter))
    search_fields = ("owner__username", "owner__email", "llm_message")
    search_help_text = _("A job id or its first digits, a username, an e-mail or words of the message.")
    date_hierarchy = "created_at"
    list_select_related = ("owner",)
    list_per_page = 50
    show_full_result_count = False  # a COUNT(*) over every job on each page is not worth it
    actions = ("reprocess_resume", "reprocess_restart", "reprocess_switch", "cancel", "redeliver_webhook")
    inlines = (FittingResultItemInline, FittingResultImageInline, WebhookDeliveryInline)
    fieldsets = (
        (None, {"fields": ("id", "owner", "user_photo", "status_badge", "current_step", "attempt")}),
        (_("Error"), {"fields": ("failed_step", "error_code", "error_message")}),
        (_("Result"), {"fields": ("llm_message", "engine", "model", "prompt_version", "cached")}),
        (_("Webhook"), {"fields": ("webhook_url", "webhook_events")}),
        (_("Cost"), {"fields": ("input_tokens", "output_tokens", "cost")}),
        (
            _("Timing"),
            {
                "fields": (
                    "created_at",
                    "enqueued_at",
                    "started_at",
                    "finished_at",
                    "deadline_at",
                    "duration",
                    "step_timings",
                )
            },
        ),
    )
    readonly_fields = ("user_photo", "status_badge", "duration", "step_timings", "cost")

    class Media:
        css = {"all": ("fitting/admin.css",)}

    # Read-only: the change page is a view page; reprocessing and deleting have their own permissions.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    # Deleting goes through the service, so that the image files go too.
    def delete_model(self, request, obj):
        fitting_delete(job=obj)

    def delete_queryset(self, request, queryset):
        for job in queryset:
            fitting_delete(job=job)

    def has_reprocess_permission(self, request) -> bool:
        return request.user.has_perm("fitting.change_fittingresult")

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm("fitting.change_webhookdelivery")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("owner", "user_image")

    # --- search by job id ---------------------------------------------------------------
    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = _job_id_hex(search_term)
        if digits is None:
            return found, may_have_duplicates
        return found | fitting_with_id_prefix(queryset, digits), may_have_duplicates

    # --- columns --------------------------------------------------------------------------
    @admin.display(description=_("job"), ordering="id")
    def short_id(self, obj: FittingResult) -> str:
        return str(obj.id)[:8]

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: FittingResult) -> str:
        return format_html(
            '<span style="background:{};color:#fff;padding:2px 8px;border-radius:9px;'
            'font-size:11px;white-space:nowrap">{}</span>',
            STATUS_COLOURS.get(obj.status, "#777"),
            obj.get_status_display(),
        )

    @admin.display(description=_("step"), ordering="current_step")
    def step(self, obj: FittingResult) -> str:
        """Where it failed, or where it is: one column instead of two mostly empty ones."""
        step = obj.failed_step or obj.current_step
        return Category(step).label if step else "-"

    @admin.display(description=_("error code"), ordering="error_code")
    def error(self, obj: FittingResult) -> str:
        if not obj.error_code:
            return "-"
        return format_html('<span title="{}">{}</span>', obj.error_message, obj.error_code)

    @admin.display(description=_("message"))
    def message(self, obj: FittingResult) -> str:
        if not obj.llm_message:
            return "-"
        return format_html(
            '<span class="message" title="{}">{}</span>', obj.llm_message, Truncator(obj.llm_message).chars(28)
        )

    @admin.display(description=_("cost"))
    def cost(self, obj: FittingResult) -> str:
        return _format_cost(costs.job_cost(obj))

    @admin.display(description=_("duration"))
    def duration(self, obj: FittingResult) -> str:
        if obj.started_at and obj.finished_at:
            return _format_duration(obj.finished_at - obj.started_at)
        if obj.started_at and obj.status == Status.PROCESSING:
            return str(_("running"))
        return "-"

    # --- detail ---------------------------------------------------------------------------
    @admin.display(description=_("photo"))
    def user_photo(self, obj: FittingResult) -> str:
        return thumbnail(obj.user_image.image) if obj.user_image else str(_("deleted by its owner"))

    @admin.display(description=_("steps"))
    def step_timings(self, obj: FittingResult) -> SafeString | str:
        metrics = obj.step_metrics or {}
        if not metrics:
            return "-"
        columns = {
            "latency_ms": _("latency (ms)"),
            "prompt_tokens": _("prompt tokens"),
            "candidates_tokens": _("response tokens"),
            "total_tokens": _("total tokens"),
            "cached": _("reused"),
        }
        head = format_html_join("", "<th>{}</th>", ((label,) for label in (_("step"), *columns.values())))
        step_names = {**dict(ImageStep.choices), "message": _("message")}
        rows = format_html_join(
            "",
            "<tr><td>{}</td>{}</tr>",
            (
                (
                    step_names.get(step, step),
                    format_html_join("", "<td>{}</td>", ((values.get(c, "-"),) for c in columns)),
                )
                for step, values in metrics.items()
                if isinstance(values, dict)
            ),
        )
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, rows)

    # --- reprocessing -----------------------------------------------------------------------
    @admin.action(description=_("Reprocess (resume from failed step)"), permissions=("reprocess",))
    def reprocess_resume(self, request, queryset):
        _reprocess(self, request, queryset, restart=False)

    @admin.action(description=_("Reprocess from scratch"), permissions=("reprocess",))
    def reprocess_restart(self, request, queryset):
        _reprocess(self, request, queryset, restart=True)

    @admin.action(description=_("Reprocess from scratch with this server's engine"), permissions=("reprocess",))
    def reprocess_switch(self, request, queryset):
        _reprocess(self, request, queryset, restart=True, switch=True)

    @admin.action(description=_("Cancel (processing jobs)"), permissions=("reprocess",))
    def cancel(self, request, queryset):
        """The same service as the API's cancel; jobs that have finished are left as they are."""
        canceled, finished = 0, []
        for job in queryset.filter(status__in=[Status.PROCESSING, Status.CANCELED]):
            try:
                fitting_cancel(job=job)
            except JobFinishedError:  # finished meanwhile
                finished.append(job)
            else:
                canceled += 1
        finished += list(queryset.exclude(status__in=[Status.PROCESSING, Status.CANCELED]))
        if canceled:
            self.message_user(
                request,
                ngettext("%(count)d job canceled.", "%(count)d jobs canceled.", canceled) % {"count": canceled},
                messages.SUCCESS,
            )
        if finished:
            self.message_user(
                request,
                ngettext(
                    "%(count)d job skipped: it has already finished (%(ids)s).",
                    "%(count)d jobs skipped: they have already finished (%(ids)s).",
                    len(finished),
                )
                % {"count": len(finished), "ids": ", ".join(f"{str(j.id)[:8]} {j.status}" for j in finished)},
                messages.WARNING,
            )

    @admin.action(description=_("Redeliver the latest webhook"), permissions=("redeliver",))
    def redeliver_webhook(self, request, queryset):
        latest = [job.webhook_deliveries.order_by("-created_at", "-id").first() for job in queryset]
        if None in latest:
            self.message_user(request, _("Jobs without a webhook delivery were skipped."), messages.WARNING)
        _redeliver(self, request, [delivery for delivery in latest if delivery is not None])

    def get_urls(self):
        view = self.admin_site.admin_view(self.reprocess_view)
        return [
            path("costs/", self.admin_site.admin_view(self.costs_view), name="fitting_fittingresult_costs"),
            path("<path:object_id>/reprocess/", view, name="fitting_fittingresult_reprocess"),
            *super().get_urls(),
        ]

    def costs_view(self, request):
        """Estimated cost per day and per user over the last ``days`` days (default 30, at most 366)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            days = min(max(int(request.GET.get("days", 30)), 1), 366)
        except ValueError:
            days = 30
        by_user = costs.cost_by_user(days=days)
        names = dict(get_user_model().objects.filter(pk__in=[r.key for r in by_user]).values_list("pk", "username"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Estimated cost"),
            "days": days,
            "by_day": [(row, _format_cost(row.cost)) for row in costs.cost_by_day(days=days)],
            "by_user": [(row, names.get(row.key, row.key), _format_cost(row.cost)) for row in by_user],
        }
        return TemplateResponse(request, "admin/fitting/fittingresult/costs.html", context)

    def reprocess_view(self, request, object_id):
        """The change page's buttons: POST ``restart=0|1`` (``switch=1``: this server's engine); back to it."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_reprocess_permission(request):
            raise PermissionDenied
        job = get_object_or_404(self.get_queryset(request), pk=object_id)
        switch = request.POST.get("switch") == "1"
        _reprocess(self, request, [job], restart=switch or request.POST.get("restart") == "1", switch=switch)
        return HttpResponseRedirect(reverse("admin:fitting_fittingresult_change", args=[job.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_reprocess"] = (
            obj is not None
            and (obj.status in REPROCESSABLE or obj.status == Status.CANCELED)
            and obj.user_image_id is not None
            and self.has_reprocess_permission(request)
        )
        # Pinned to another engine: only switching to this server's engine is offered.
        context["other_engine"] = obj is not None and obj.engine_identity != engine_identity()
        return super().render_change_form(request, context, add, change, form_url, obj)


# --- webhook deliveries ------------------------------------------------------------------------
class WebhookAttemptInline(_ReadOnlyInline):
    model = WebhookAttempt
    fields = ("number", "started_at", "duration_ms", "status_code", "outcome", "error")
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Read-only: the one write is redelivery (same payload and webhook-id, a new attempt)."""

    list_display = ("webhook_id", "job_link", "event", "status", "attempt_count", "next_attempt_at", "created_at")
    list_filter = ("status", "event", ("created_at", admin.DateFieldListFilter))
    search_fields = ("webhook_id", "url")
    search_help_text = _("A webhook id (msg_…), a job id or its first digits, or words of the URL.")
    list_select_related = ("job",)
    show_full_result_count = False
    actions = ("redeliver",)
    inlines = (WebhookAttemptInline,)
    fields = (
        "webhook_id",
        "job_link",
        "event",
        "url",
        "status",
        "attempt_count",
        "next_attempt_at",
        "retry_until",
        "created_at",
        "finished_at",
        "payload",
    )
    readonly_fields = ("job_link",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_redeliver_permission(self, request) -> bool:
        return request.user.has_perm("fitting.change_webhookdelivery")

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        digits = _job_id_hex(search_term)
        if digits is None:
            return found, may_have_duplicates
        jobs = fitting_with_id_prefix(FittingResult.objects.all(), digits)
        return found | queryset.filter(job__in=jobs), may_have_duplicates

    @admin.display(description=_("job"), ordering="job")
    def job_link(self, obj: WebhookDelivery) -> str:
        url = reverse("admin:fitting_fittingresult_change", args=[obj.job_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.job_id)[:8])

    @admin.action(description=_("Redeliver"), permissions=("redeliver",))
    def redeliver(self, request, queryset):
        _redeliver(self, request, queryset)


# --- catalogue ------------------------------------------------------------------------------
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


# --- erasure: photos and users are deleted through the services that know their jobs -------
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
