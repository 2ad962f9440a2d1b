"""Estimated cost of the engine's work, from the tokens each job used and the price of its model.

Prices are FITTING_PRICES (USD per million tokens, input and output, per model; its defaults
come from the model table, ``fitting.engines.catalog``). Output tokens are what a step's answer
used beyond its prompt (the image, and any thinking), so an image of about 1,120 tokens costs
about $0.067 at $60 per million. A step reused from another job
(``cached``) or a whole-result cache hit used no tokens and costs nothing. Only the image
steps report their usage; the recommendation message (the text model) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from fitting.models import FittingResult

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    input: Decimal  # USD per million input tokens
    output: Decimal  # USD per million output tokens


def model_price(model: str) -> Price | None:
    """The price of ``model``, or None when FITTING_PRICES does not know it."""
    price = settings.FITTING_PRICES.get(model)
    if price is None:
        return None
    return Price(input=Decimal(str(price["input"])), output=Decimal(str(price["output"])))


def usage_tokens(usage: dict) -> tuple[int, int]:
    """(input, output) tokens of a step's usage (prompt/candidates/total tokens as the engine reports)."""
    prompt = int(usage.get("prompt_tokens") or 0)
    candidates = int(usage.get("candidates_tokens") or 0)
    total = int(usage.get("total_tokens") or 0)
    return prompt, max(candidates, total - prompt)  # thinking tokens are billed as output


def tokens_cost(model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    price = model_price(model)
    if price is None:
        return None
    return (price.input * input_tokens + price.output * output_tokens) / MILLION


def job_cost(job: FittingResult) -> Decimal | None:
    """What ``job``'s engine calls cost (all its attempts); None for a model without a price."""
    return tokens_cost(job.model, job.input_tokens, job.output_tokens)


# --- aggregates for the admin (and a dashboard) -------------------------------------------------
@dataclass(frozen=True)
class CostRow:
    key: object  # the day, or the user id
    jobs: int
    engine_jobs: int  # jobs that called the engine (not whole-result cache hits)
    input_tokens: int
    output_tokens: int
    cost: Decimal | None  # None when a model used has no price


def _rows(jobs: QuerySet[FittingResult], key: str) -> list[CostRow]:
    grouped = jobs.values(key, "model").annotate(
        jobs=Count("id"),
        engine_jobs=Count("id", filter=Q(cached=False)),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
    )
    totals: dict[object, dict] = {}
    for row in grouped:
        total = totals.setdefault(
            row[key], {"jobs": 0, "engine_jobs": 0, "input_tokens": 0, "output_tokens": 0, "cost": Decimal(0)}
        )
        for name in ("jobs", "engine_jobs", "input_tokens", "output_tokens"):
            total[name] += row[name] or 0
        cost = tokens_cost(row["model"], row["input_tokens"] or 0, row["output_tokens"] or 0)
        if cost is None and (row["input_tokens"] or row["output_tokens"]):
            total["cost"] = None
        elif total["cost"] is not None:
            total["cost"] += cost or Decimal(0)
    return [CostRow(key=k, **v) for k, v in totals.items()]


def _since(days: int):
    today = timezone.localdate()
    return today - timedelta(days=days - 1)


def cost_by_day(*, days: int = 30) -> list[CostRow]:
    """One row per day (TIME_ZONE) of the last ``days`` days with jobs, newest first."""
    jobs = FittingResult.objects.filter(created_at__date__gte=_since(days)).annotate(day=TruncDate("created_at"))
    return sorted(_rows(jobs, "day"), key=lambda r: r.key, reverse=True)


def cost_by_user(*, days: int = 30) -> list[CostRow]:
    """One row per user (key: the user id) with jobs in the last ``days`` days, costliest first."""
    jobs = FittingResult.objects.filter(created_at__date__gte=_since(days))
    return sorted(_rows(jobs, "owner_id"), key=lambda r: (r.cost or Decimal(0), r.jobs), reverse=True)


def cost_of_day(day: date) -> CostRow | None:
    rows = cost_by_day(days=(timezone.localdate() - day).days + 1)
    return next((r for r in rows if r.key == day), None)


def format_cost(cost: Decimal | None) -> str:
    """USD with four decimals (an image is about $0.039); "-" for a model without a price."""
    return "-" if cost is None else f"${cost:.4f}"
