"""Staff pages of jobs.

Jobs are read-only here: the only writes are reprocessing, through the same service as
``reprocess_failed_fittings``, and deletion, through the same service as the API's (files too).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from core.admin import thumbnail
from fitting import costs
from fitting.admin.common import JobInline, job_id_hex
from fitting.admin.webhooks import WebhookDeliveryInline, deliveries_redeliver
from fitting.engines import can_run, engine_identity
from fitting.errors import (
    JobEngineMismatchError,
    JobFinishedError,
    JobPhotoDeletedError,
    NotReprocessableError,
)
from fitting.models import (
    RATING_SCORES,
    STEP_ORDER,
    Category,
    FittingResult,
    FittingResultImage,
    FittingResultItem,
    ImageStep,
    Status,
    StepAttempt,
)
from fitting.selectors import fitting_with_id_prefix
from fitting.services.erasure import fitting_delete
from fitting.services.lifecycle import fitting_cancel, fitting_reprocess

STATUS_COLOURS = {
    Status.PROCESSING: "#2f6fbf",
    Status.COMPLETED: "#2e8540",
    Status.FAILED: "#c0392b",
    Status.TIMEOUT: "#d27f0a",
    Status.CANCELED: "#6c757d",
}


class GarmentFilter(admin.SimpleListFilter):
    """Jobs with a garment of one category (a dress, shoes, …), in step order."""

    title = _("garment")
    parameter_name = "garment"

    def lookups(self, request, model_admin):
        return [(category.value, category.label) for category in STEP_ORDER]

    def queryset(self, request, queryset):
        # One garment per category and job (jobitem_one_per_category): no duplicate rows.
        return queryset.filter(items__category=self.value()) if self.value() else queryset


class RatingFilter(admin.SimpleListFilter):
    """Jobs by their owner's rating: a score, or not rated."""

    title = _("user rating")
    parameter_name = "rating"
    NONE = "none"

    def lookups(self, request, model_admin):
        return [(str(score), "★" * score) for score in RATING_SCORES] + [(self.NONE, _("not rated"))]

    def queryset(self, request, queryset):
        if self.value() == self.NONE:
            return queryset.filter(rating__isnull=True)
        if self.value() in {str(score) for score in RATING_SCORES}:
            return queryset.filter(rating__score=int(self.value()))
        return queryset


def _format_duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m {seconds:02d}s"


class FittingResultItemInline(JobInline):
    model = FittingResultItem
    fields = ("order", "category", "item", "garment")
    readonly_fields = fields
    verbose_name_plural = _("items")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("item")

    @admin.display(description=_("image"))
    def garment(self, obj: FittingResultItem) -> str:
        return thumbnail(obj.item.image)


class FittingResultImageInline(JobInline):
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


class StepAttemptInline(JobInline):
    """The quality gate's attempts of each step: scores, the checks that failed, the image."""

    model = StepAttempt
    fields = (
        "category",
        "number",
        "sample",
        "candidate_rank",
        "outcome",
        "failed",
        "checks",
        "judge",
        "seed",
        "latency_ms",
        "preview",
    )
    readonly_fields = fields
    verbose_name_plural = _("step attempts (quality checks)")

    @admin.display(description=_("failed checks"))
    def failed(self, obj: StepAttempt) -> str:
        if obj.passed is None:
            return _("not checked")
        return ", ".join(obj.failed_checks) or "-"

    @admin.display(description=_("scores"))
    def checks(self, obj: StepAttempt) -> SafeString | str:
        checks = (obj.scores or {}).get("checks") or {}
        if not checks:
            return "-"
        return format_html_join(
            "",
            '<div class="quality-{}">{}: {} <small>({} {})</small></div>',
            (
                (check["outcome"], name, f"{check['value']:.2f}", check["outcome"], f"≥ {check['threshold']:.2f}")
                for name, check in checks.items()
            ),
        )

    @admin.display(description=_("judge"))
    def judge(self, obj: StepAttempt) -> SafeString | str:
        if "judge" not in (obj.scores or {}):
            return "-"
        verdict = obj.scores["judge"]
        if verdict is None:
            return _("no answer")
        flags = ", ".join(
            name
            for name in ("same_person", "garment_applied", "garment_faithful", "other_clothes_kept")
            if not verdict.get(name)
        )
        return format_html(
            "{}/10<br><small>{}</small><br><small>{}</small>",
            f"{verdict['score']:g}",
            _("not: %(flags)s") % {"flags": flags} if flags else _("all yes"),
            "; ".join(verdict.get("artifacts") or []),
        )

    @admin.display(description=_("image"))
    def preview(self, obj: StepAttempt) -> str:
        return thumbnail(obj.image)


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
        "prompt_version",
        "cost",
        "created_at",
    )
    list_filter = (
        "status",
        "failed_step",
        GarmentFilter,
        "error_code",
        "engine",
        "prompt_version",
        RatingFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("owner__username", "owner__email", "llm_message")
    search_help_text = _("A job id or its first digits, a username, an e-mail or words of the message.")
    date_hierarchy = "created_at"
    list_select_related = ("owner",)
    list_per_page = 50
    show_full_result_count = False  # a COUNT(*) over every job on each page is not worth it
    actions = ("reprocess_resume", "reprocess_restart", "reprocess_switch", "cancel", "redeliver_webhook")
    inlines = (FittingResultItemInline, FittingResultImageInline, StepAttemptInline, WebhookDeliveryInline)
    fieldsets = (
        (None, {"fields": ("id", "owner", "user_photo", "status_badge", "current_step", "attempt")}),
        (_("Error"), {"fields": ("failed_step", "error_code", "error_message")}),
        (_("Result"), {"fields": ("llm_message", "engine", "model", "prompt_version", "cached")}),
        (_("Candidates"), {"fields": ("num_samples", "seed")}),
        (_("User rating"), {"fields": ("user_rating",)}),
        (_("Webhook"), {"fields": ("webhook_url", "webhook_events")}),
        (_("Cost"), {"fields": ("input_tokens", "output_tokens", "judge_input_tokens", "judge_output_tokens", "cost")}),
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
    readonly_fields = ("user_photo", "status_badge", "duration", "step_timings", "cost", "user_rating")

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
        digits = job_id_hex(search_term)
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

    @admin.display(description=_("user rating"))
    def user_rating(self, obj: FittingResult) -> SafeString | str:
        rating = getattr(obj, "rating", None)  # the reverse one-to-one: AttributeError when there is none
        if rating is None:
            return str(_("not rated"))
        reasons = ", ".join(rating.reason_labels()) or "-"
        return format_html(
            '<div class="rating"><strong title="{score}/5">{stars}</strong> {score}/5 · {reasons}'
            '<div class="rating-comment">{comment}</div><small>{when}</small></div>',
            score=rating.score,
            stars="★" * rating.score + "☆" * (5 - rating.score),
            reasons=reasons,
            comment=rating.comment or "",
            when=timezone.localtime(rating.updated_at).strftime("%Y-%m-%d %H:%M:%S"),
        )

    @admin.display(description=_("cost"))
    def cost(self, obj: FittingResult) -> str:
        return costs.format_cost(costs.job_cost(obj))

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
            "attempts": _("attempts"),
            "quality_passed": _("quality passed"),
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
        for job in queryset.filter(status__in=Status.cancelable()):
            try:
                fitting_cancel(job=job)
            except JobFinishedError:  # finished meanwhile
                finished.append(job)
            else:
                canceled += 1
        finished += list(queryset.exclude(status__in=Status.cancelable()))
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
        deliveries_redeliver(self, request, [delivery for delivery in latest if delivery is not None])

    def get_urls(self):
        view = self.admin_site.admin_view(self.reprocess_view)
        return [
            path("<path:object_id>/reprocess/", view, name="fitting_fittingresult_reprocess"),
            *super().get_urls(),
        ]

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
            and obj.status in Status.reprocessable(named=True)
            and obj.user_image_id is not None
            and self.has_reprocess_permission(request)
        )
        # Pinned to another engine: only switching to this server's engine is offered.
        context["other_engine"] = obj is not None and not can_run(obj.engine_identity)
        return super().render_change_form(request, context, add, change, form_url, obj)
