"""The staff's report pages, mounted by the project's admin site (config.admin): the dashboard
(/admin/dashboard/: jobs, failures, latencies, cache, messages) and the estimated cost
(/admin/fitting/fittingresult/costs/).

Views of the admin site (staff only, and the view permission on jobs). The dashboard reads
through ``fitting.selectors.fitting_dashboard`` and draws its charts on the server
(``fitting.charts``): no JavaScript, nothing from a CDN. Not in ``fitting.admin``: importing
that package registers the ModelAdmins on the site, which is being defined where these are mounted.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import formats
from django.utils.translation import gettext as _

from fitting import costs
from fitting.charts import Series, horizontal_bars, stacked_bars
from fitting.models import STEP_ORDER, FittingResult, ImageStep, RatingReason, Status
from fitting.selectors import (
    LATENCY_MAX_JOBS,
    LATENCY_WINDOW,
    PROMPT_COMPARISON_WINDOW,
    QUALITY_WINDOW,
    PromptComparisonRow,
    fitting_dashboard,
    prompt_comparison,
    quality_by_identity,
)
from fitting.stats import wilson

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
    """The estimated cost of the last 30 days (the usage ledger, fitting.costs); None when a model used has no price."""
    rows = costs.cost_by_day(days=30)
    if any(row.cost is None for row in rows):
        return None
    return f"${sum(row.cost for row in rows):.2f}"


def _comparison_row(row: PromptComparisonRow) -> dict:
    """One identity's figures as the page shows them: each rate with its 95% Wilson interval."""
    cost = costs.identity_cost(
        row.model, row.input_tokens, row.output_tokens, row.judge_input_tokens, row.judge_output_tokens
    )
    labels = dict(RatingReason.choices)
    return {
        "row": row,
        "completion": wilson(row.completed, row.jobs),
        "gate": wilson(row.passed, row.checked),
        "reasons": [(labels[reason], wilson(count, row.ratings)) for reason, count in row.reasons.items() if count],
        "cost_per_completed": costs.format_cost(cost / row.completed) if cost is not None and row.completed else "-",
    }


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
    order = [*STEP_ORDER, "message"]
    latency_table = [(_step_label(key), *data.latency[key]) for key in order if key in data.latency]
    quality_checks, quality_rows = quality_by_identity()
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "quality_checks": quality_checks,
        "quality_rows": [
            (row, [None if rate is None else round(100 * rate) for rate in row.pass_rates.values()])
            for row in quality_rows
        ],
        "quality_days": QUALITY_WINDOW.days,
        "comparison": [_comparison_row(row) for row in prompt_comparison(now=data.now)],
        "comparison_days": PROMPT_COMPARISON_WINDOW.days,
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


def _user_label(user_id: int | None, names: dict[int, str]) -> str:
    if user_id is None:
        return _("erased accounts")
    return names.get(user_id, str(user_id))


def costs_view(request: HttpRequest) -> TemplateResponse:
    """Estimated cost per day and per user over the last ``days`` days (default 30, at most 366)."""
    if not admin.site.get_model_admin(FittingResult).has_view_permission(request):
        raise PermissionDenied
    try:
        days = min(max(int(request.GET.get("days", 30)), 1), 366)
    except ValueError:
        days = 30
    by_user = costs.cost_by_user(days=days)
    names = dict(get_user_model().objects.filter(pk__in=[r.key for r in by_user]).values_list("pk", "username"))
    context = {
        **admin.site.each_context(request),
        "opts": FittingResult._meta,
        "title": _("Estimated cost"),
        "days": days,
        "by_day": [(row, costs.format_cost(row.cost)) for row in costs.cost_by_day(days=days)],
        "by_user": [(row, _user_label(row.key, names), costs.format_cost(row.cost)) for row in by_user],
    }
    return TemplateResponse(request, "admin/fitting/fittingresult/costs.html", context)
