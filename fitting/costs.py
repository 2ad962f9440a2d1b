"""Estimated cost of the engine's work, from the tokens each job used and the price of its model.

Prices are FITTING_PRICES (USD per million tokens, input and output, per model; its defaults
come from the model table, ``fitting.engines.catalog``). Output tokens are what a step's answer
used beyond its prompt (the image, and any thinking), so an image of about 1,120 tokens costs
about $0.067 at $60 per million (1K; about $0.10 at 2K). A step reused from another job
(``cached``) or a whole-result cache hit used no tokens and costs nothing. Only the image
steps report their usage, and the quality judge's (FITTING_QUALITY_JUDGE=gemini): its tokens are
the text model's (GEMINI_TEXT_MODEL) and are priced at its rate. The recommendation message
(the text model too) is not counted.

What was used is kept in a ledger, ``UsageDay`` (per user and day: jobs started, engine
calls, tokens, cost), written by ``usage_add`` in the same transaction as what it counts. The
daily quota and the cost pages read it, never the job rows: deleting a job (or, anonymised,
the account) changes neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Sum
from django.utils import timezone

from fitting.models import FittingResult, UsageDay

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


JUDGE_PREFIX = "judge_"  # a step's usage keeps the judge's tokens as judge_prompt_tokens, …


def usage_tokens(usage: dict, prefix: str = "") -> tuple[int, int]:
    """(input, output) tokens of a step's usage (prompt/candidates/total tokens as the engine reports);
    with ``prefix=JUDGE_PREFIX``, the judge's."""
    prompt = int(usage.get(f"{prefix}prompt_tokens") or 0)
    candidates = int(usage.get(f"{prefix}candidates_tokens") or 0)
    total = int(usage.get(f"{prefix}total_tokens") or 0)
    return prompt, max(candidates, total - prompt)  # thinking tokens are billed as output


def judge_model() -> str:
    """The model the quality judge's tokens are priced as: the text model."""
    return settings.GEMINI_TEXT_MODEL


def tokens_cost(model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    price = model_price(model)
    if price is None:
        return None
    return (price.input * input_tokens + price.output * output_tokens) / MILLION


def identity_cost(
    model: str, input_tokens: int, output_tokens: int, judge_input_tokens: int = 0, judge_output_tokens: int = 0
) -> Decimal | None:
    """The image model's tokens at its price plus the judge's at the text model's; None when a
    model that was used has no price."""
    cost = tokens_cost(model, input_tokens, output_tokens)
    if cost is None or not (judge_input_tokens or judge_output_tokens):
        return cost
    judge = tokens_cost(judge_model(), judge_input_tokens, judge_output_tokens)
    return None if judge is None else cost + judge


def job_cost(job: FittingResult) -> Decimal | None:
    """What ``job``'s engine calls cost (all its attempts, and its judge); None for a model without a price."""
    return identity_cost(
        job.model, job.input_tokens, job.output_tokens, job.judge_input_tokens, job.judge_output_tokens
    )


# --- the ledger ---------------------------------------------------------------------------------
COUNTERS = ("jobs_started", "cached_jobs", "engine_jobs", "engine_calls", "input_tokens", "output_tokens")


def usage_add(*, user_id: int, model: str = "", **counts: int) -> None:
    """Add ``counts`` (``COUNTERS``) to the user's usage of today, in the caller's transaction.

    The tokens are priced now, at ``model``'s price; tokens of a model without a price make
    the day's cost unknown (NULL) for good. Atomic increments: concurrent writers add up.
    """
    unknown = set(counts) - set(COUNTERS)
    if unknown:
        raise TypeError(f"not a usage counter: {sorted(unknown)}")
    changes = {name: F(name) + value for name, value in counts.items() if value}
    if counts.get("input_tokens") or counts.get("output_tokens"):
        cost = tokens_cost(model, counts.get("input_tokens", 0), counts.get("output_tokens", 0))
        changes["cost"] = None if cost is None else F("cost") + cost
    if not changes:
        return
    day = timezone.localdate()
    # One UPDATE when today's row exists (every call but the user's first of the day): the POST
    # that starts a job and every step write here.
    if UsageDay.objects.filter(user_id=user_id, day=day).update(**changes):
        return
    row, _created = UsageDay.objects.get_or_create(user_id=user_id, day=day)
    UsageDay.objects.filter(id=row.id).update(**changes)


def usage_give_back_job(*, job: FittingResult, cap: int) -> bool:
    """Give ``job``'s daily-quota slot back (it made nothing usable: QUALITY_CHECK_FAILED); True if given.

    Takes one off ``jobs_started`` of the day the job was started (when it counted), in the
    caller's transaction. Its engine calls and tokens stay: they were paid for. Once per job
    (a reprocessed job that fails again gives nothing more back), and at most ``cap`` slots
    per user and day (the day's quota; 0: no quota, nothing to give back): a user whose jobs
    keep failing the gate starts at most twice the quota in a day, never without bound.
    """
    if not cap or job.quota_given_back:
        return False
    day = timezone.localdate(job.created_at)
    given = UsageDay.objects.filter(user_id=job.owner_id, day=day, jobs_started__gt=0, jobs_given_back__lt=cap).update(
        jobs_started=F("jobs_started") - 1, jobs_given_back=F("jobs_given_back") + 1
    )
    if given:
        FittingResult.objects.filter(id=job.id).update(quota_given_back=True)
        job.quota_given_back = True
    return bool(given)


def usage_jobs_started(*, user_id: int) -> int:
    """Jobs the user started today (TIME_ZONE) that were not whole-result cache hits."""
    row = UsageDay.objects.filter(user_id=user_id, day=timezone.localdate()).values_list("jobs_started", flat=True)
    return row.first() or 0


# --- aggregates for the admin (and a dashboard) -------------------------------------------------
@dataclass(frozen=True)
class CostRow:
    key: object  # the day, or the user id (None: the users who erased their account)
    jobs: int  # jobs started, cache hits included
    engine_jobs: int  # jobs (attempts) that called the engine: not cache hits, nor canceled before they ran
    engine_calls: int  # calls of the image model
    input_tokens: int
    output_tokens: int
    cost: Decimal | None  # None when a model used has no price


def _rows(key: str, days: int) -> list[CostRow]:
    grouped = (
        UsageDay.objects.filter(day__gte=_since(days))
        .values(key)
        .order_by(key)
        .annotate(**{f"sum_{name}": Sum(name) for name in COUNTERS}, sum_cost=Sum("cost"))
    )
    # Sum() skips NULLs: a NULL cost among the group's rows makes the group's cost unknown.
    unknown = set(
        UsageDay.objects.filter(day__gte=_since(days), cost__isnull=True).values_list(key, flat=True).distinct()
    )
    return [
        CostRow(
            key=row[key],
            jobs=(row["sum_jobs_started"] or 0) + (row["sum_cached_jobs"] or 0),
            engine_jobs=row["sum_engine_jobs"] or 0,
            engine_calls=row["sum_engine_calls"] or 0,
            input_tokens=row["sum_input_tokens"] or 0,
            output_tokens=row["sum_output_tokens"] or 0,
            cost=None if row[key] in unknown else _money(row["sum_cost"]),
        )
        for row in grouped
    ]


def _money(value) -> Decimal:
    # SQLite sums decimals as floats: back to the column's ten places.
    return Decimal(str(value or 0)).quantize(Decimal("1e-10"))


def _since(days: int) -> date:
    today = timezone.localdate()
    return today - timedelta(days=days - 1)


def cost_by_day(*, days: int = 30) -> list[CostRow]:
    """One row per day (TIME_ZONE) of the last ``days`` days with usage, newest first."""
    return sorted(_rows("day", days), key=lambda r: r.key, reverse=True)


def cost_by_user(*, days: int = 30) -> list[CostRow]:
    """One row per user with usage in the last ``days`` days, costliest first.

    The key is the user id; None for the users who erased their account, all in one row.
    """
    return sorted(_rows("user_id", days), key=lambda r: (r.cost or Decimal(0), r.jobs), reverse=True)


def format_cost(cost: Decimal | None) -> str:
    """USD with four decimals (an image is about $0.067 with the default model); "-" for a model without a price."""
    return "-" if cost is None else f"${cost:.4f}"
