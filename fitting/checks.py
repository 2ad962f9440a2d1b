"""System checks (``manage.py check``, ``check --deploy`` and every command that runs them).

The configured engine's models against the model table (``fitting.engines.catalog``):
warnings, never errors, because the announced shutdown dates are the earliest possible ones
and ``manage.py check_engine`` (which asks the provider) is the real answer.

- fitting.W001: a configured model's announced shutdown date has passed;
- fitting.W002: it is within SHUTDOWN_WARNING_DAYS days;
- fitting.W003: a configured model is not in the table (no dates, no price).
"""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning
from django.utils import timezone

from fitting.engines.catalog import SHUTDOWN_WARNING_DAYS, known_model
from fitting.engines.identity import engine_models

CHANGE_HINT = (
    "Set {setting} to a current model (fitting/engines/catalog.py lists them; "
    "`manage.py check_engine` asks the provider)."
)


def configured_models() -> list[tuple[str, str]]:
    """(setting, model) of each provider model the configured engine calls; none for the local engine."""
    return engine_models(settings.FITTING_ENGINE)


def model_warnings(*, today: date) -> list[CheckWarning]:
    """The warnings about the configured models, as of ``today``."""
    found = []
    for setting, model in configured_models():
        hint = CHANGE_HINT.format(setting=setting)
        known = known_model(model)
        if known is None:
            found.append(
                CheckWarning(
                    f"{setting}={model}: not in the model table, so its shutdown date and price are unknown.",
                    hint="If it is a current model, add it to fitting/engines/catalog.py (its price: FITTING_PRICES).",
                    id="fitting.W003",
                )
            )
        elif known.shutdown is not None and known.shutdown <= today:
            found.append(
                CheckWarning(
                    f"{setting}={model}: its shutdown was announced for {known.shutdown.isoformat()}, which has "
                    "passed; the provider may answer 404 NOT_FOUND and every job fail with ENGINE_MODEL_UNAVAILABLE.",
                    hint=hint,
                    id="fitting.W001",
                )
            )
        elif known.shutdown is not None and (known.shutdown - today).days <= SHUTDOWN_WARNING_DAYS:
            found.append(
                CheckWarning(
                    f"{setting}={model}: its shutdown is announced for {known.shutdown.isoformat()}, in "
                    f"{(known.shutdown - today).days} days.",
                    hint=hint,
                    id="fitting.W002",
                )
            )
    return found


@register(Tags.compatibility)
def check_engine_models(app_configs=None, **kwargs) -> list[CheckWarning]:
    return model_warnings(today=timezone.localdate())
