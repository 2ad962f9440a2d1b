"""The staff dashboard (/admin/dashboard/): jobs, failures, latencies, cache, messages.

A view of the admin site (staff only, and the view permission on jobs), reading through
``fitting.selectors.fitting_dashboard`` and drawing its charts on the server
(``fitting.charts``): no JavaScript, nothing from a CDN.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import formats
from django.utils.translation import gettext as _

from fitting import costs
from fitting.charts import Series, horizontal_bars, stacked_bars
from fitting.models import Category, ImageStep, Status
from fitting.selectors import LATENCY_MAX_JOBS, LATENCY_WINDOW, fitting_dashboard

STATUS_COLOURS = {
    Status.COMPLETED: "#2e8540",
    Status.PROCESSING: "#2f6fbf",
    Status.FAILED: "#c0392b",
    Status.TIMEOUT: "#d27f0a",
    Status.CANCELED: "#8a8f98",
}
P50, P95 = "#2f6fbf", "#9dbbe3"


def _series(counts: dict[str, list[int]]) -> list[Series]:
    return [Series(str(Status(status).label), STATUS_COLOURS[status], counts[status]) for status in STATUS_COLOURS]


def _step_label(step: str | None) -> str:
    if step is None:
        return _("before any step")
    if step == "message":
        return _("message")
    return str(ImageStep(step).label) if step in ImageStep.values else step


def _cost_30_days() -> str | None:
    """The estimated cost of the last 30 days' jobs (fitting.costs); None when a model used has no price."""
    rows = costs.cost_by_day(days=30)
    if any(row.cost is None for row in rows):
        return None
    return f"${sum(row.cost for row in rows):.2f}"


def dashboard_view(request):
    if not request.user.has_perm("fitting.view_fittingresult"):
        raise PermissionDenied
    data = fitting_dashboard()
    hourly = stacked_bars(
        [f"{hour:%H}시" for hour in data.hours], _series(data.per_hour), title=_("Jobs per hour, last 24 hours")
    )
    daily = stacked_bars(
        [f"{day.month}/{day.day}" for day in data.days], _series(data.per_day), title=_("Jobs per day, last 30 days")
    )
    failures = horizontal_bars(
        [(f"{_step_label(step)} · {code}", [(jobs, "#c0392b", _("jobs"))]) for step, code, jobs in data.failures],
        title=_("Failures by step and error code, last 30 days"),
    )
    latency_rows = [
        (_step_label(key), [(p50, P50, "p50"), (p95, P95, "p95")]) for key, (p50, p95, _samples) in data.latency.items()
    ]
    latency = horizontal_bars(latency_rows, title=_("Step latency"), unit=" ms")
    order = [*Category.values, "message"]
    latency_table = [(_step_label(key), *data.latency[key]) for key in order if key in data.latency]
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "data": data,
        "generated_at": formats.date_format(data.now, "DATETIME_FORMAT"),
        "hourly": hourly,
        "daily": daily,
        "failures": failures if data.failures else None,
        "latency": latency if latency_rows else None,
        "latency_table": latency_table,
        "latency_days": LATENCY_WINDOW.days,
        "latency_max_jobs": LATENCY_MAX_JOBS,
        "cache_share": round(100 * data.cached / data.completed) if data.completed else None,
        "cost": _cost_30_days(),
    }
    return TemplateResponse(request, "admin/fitting/dashboard.html", context)
