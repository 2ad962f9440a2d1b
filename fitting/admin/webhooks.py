"""Staff pages of webhook deliveries: read-only, the one write is redelivery."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from fitting.admin.common import JobInline, ReadOnlyInline, job_id_hex
from fitting.models import (
    FittingResult,
    WebhookAttempt,
    WebhookDelivery,
)
from fitting.selectors import fitting_with_id_prefix
from fitting.webhooks import webhook_redeliver


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


class WebhookDeliveryInline(JobInline):
    model = WebhookDelivery
    fields = ("event", "webhook_id", "status", "attempt_count", "next_attempt_at", "attempt_log", "created_at")
    readonly_fields = fields
    verbose_name_plural = _("webhook deliveries")
    show_change_link = True  # the delivery's page: its payload and the redeliver action

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("attempts")

    @admin.display(description=_("attempt log"))  # not "attempts": that heads attempt_count's column
    def attempt_log(self, obj: WebhookDelivery) -> SafeString | str:
        return _attempts_table(obj)


def deliveries_redeliver(modeladmin, request: HttpRequest, deliveries) -> None:
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


class WebhookAttemptInline(ReadOnlyInline):
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
        digits = job_id_hex(search_term)
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
        deliveries_redeliver(self, request, queryset)
