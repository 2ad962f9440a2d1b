"""The provider models the service knows: one table, the source of the default prices and
of the lifecycle check (``fitting.checks``).

Light on purpose (no Django, no google-genai): the settings import it to build the default
``FITTING_PRICES``.

Where the figures come from, read on 2026-12-04 (through a search index of stored pages, not
a live browser):

- Release and shutdown dates: Google's "Gemini deprecations" page,
  https://ai.google.dev/gemini-api/docs/deprecations (the stored copies list
  gemini-3.5-flash 2026-05-19, gemini-3.1-flash-image and gemini-3-pro-image 2026-05-28 with
  no shutdown announced, gemini-3.1-flash-lite 2026-05-07 shut down 2027-05-07, the 3.x image
  previews shut down 2026-06-25, gemini-2.5-flash and gemini-2.5-pro 2026-06-17,
  gemini-2.5-flash-lite 2026-07-22, gemini-2.5-flash-image 2026-10-02). Google calls these
  the earliest possible dates; the probe (``manage.py check_engine``) is the real answer.
  A later third-party note (read 2026-11-10) says gemini-2.5-flash and gemini-2.5-pro were
  moved to 2026-12-01 and routed to newer models: unconfirmed, and past either way.
- Prices: Google's "Gemini Developer API pricing" page, https://ai.google.dev/gemini-api/docs/pricing,
  paid tier, standard (not batch), prompts up to 200k tokens. Only a third-party
  transcription of that page (read by them on 2026-09-20) was available: gemini-3.5-flash
  $1.50 / $9.00 and gemini-3-pro-image $120 per million image output tokens ($0.134 per
  1K/2K image) come from it; the 2.5 prices are those the project used before (published
  2025-10). Figures marked UNCONFIRMED below were read only on resellers' or gateways' pages,
  not on Google's.
- virtual-try-on-001 (Vertex AI only, billed per image): the model page
  (docs.cloud.google.com/.../models/vto/virtual-try-on-001) gives no date or price; its price
  per image is unknown here.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from datetime import date

IMAGE, TEXT, TRY_ON = "image", "text", "try-on"
# A configured model whose announced shutdown is this close (or past) is warned about.
SHUTDOWN_WARNING_DAYS = 60


@dataclass(frozen=True)
class KnownModel:
    name: str
    kind: str  # IMAGE, TEXT or TRY_ON
    released: date | None
    shutdown: date | None  # the announced (earliest) shutdown; None: none announced
    _: KW_ONLY  # the rest by name: a positional True once landed in image_price
    input_price: float | None = None  # USD per million input tokens
    output_price: float | None = None  # USD per million output tokens (image and thinking tokens)
    image_price: float | None = None  # USD per image, for models billed per image
    # Takes ``image_config.image_size`` ("1K", "2K", …): sent only to the models marked here.
    takes_image_size: bool = False


MODELS: tuple[KnownModel, ...] = (
    # --- current -------------------------------------------------------------------------------
    # Input $0.50 and output $60 per million image tokens ($0.067 per 1K image, $0.101 per 2K):
    # UNCONFIRMED (resellers' pages quoting Google's; the same figures on several of them).
    KnownModel(
        "gemini-3.1-flash-image",
        IMAGE,
        date(2026, 5, 28),
        None,
        input_price=0.50,
        output_price=60.00,
        takes_image_size=True,
    ),
    # Input $2.00: UNCONFIRMED (the previous preview's price); output $120 from the pricing page.
    KnownModel(
        "gemini-3-pro-image",
        IMAGE,
        date(2026, 5, 28),
        None,
        input_price=2.00,
        output_price=120.00,
        takes_image_size=True,
    ),
    KnownModel("gemini-3.5-flash", TEXT, date(2026, 5, 19), None, input_price=1.50, output_price=9.00),
    # Prices UNCONFIRMED (not found on a stored copy of the pricing page).
    KnownModel("gemini-3.1-flash-lite", TEXT, date(2026, 5, 7), date(2027, 5, 7)),
    # Vertex AI Virtual Try-On (a later engine): release date and price per image UNCONFIRMED.
    KnownModel("virtual-try-on-001", TRY_ON, None, None),
    # --- shut down or announced: kept so the check names them and old jobs keep a cost -------
    KnownModel(
        "gemini-3.1-flash-image-preview",
        IMAGE,
        date(2026, 2, 26),
        date(2026, 6, 25),
        input_price=0.50,
        output_price=60.00,
        takes_image_size=True,
    ),
    KnownModel(
        "gemini-3-pro-image-preview",
        IMAGE,
        date(2025, 11, 20),
        date(2026, 6, 25),
        input_price=2.00,
        output_price=120.00,
        takes_image_size=True,
    ),
    KnownModel(
        "gemini-2.5-flash-image", IMAGE, date(2025, 10, 2), date(2026, 10, 2), input_price=0.30, output_price=30.00
    ),
    KnownModel("gemini-2.5-flash", TEXT, date(2025, 6, 17), date(2026, 6, 17), input_price=0.30, output_price=2.50),
    KnownModel(
        "gemini-2.5-flash-lite", TEXT, date(2025, 7, 22), date(2026, 7, 22), input_price=0.10, output_price=0.40
    ),
    KnownModel("gemini-2.5-pro", TEXT, date(2025, 6, 17), date(2026, 6, 17), input_price=1.25, output_price=10.00),
)
_BY_NAME = {model.name: model for model in MODELS}


def model_id(name: str) -> str:
    """The bare model id of a setting's value (``models/x``, ``publishers/google/models/x`` → ``x``)."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def known_model(name: str) -> KnownModel | None:
    """The table's row for ``name`` (a bare id or a resource path), or None when it is not listed."""
    return _BY_NAME.get(model_id(name))


def default_prices() -> dict[str, dict[str, float]]:
    """``FITTING_PRICES``' defaults: every model of the table with a price per token (input and output)."""
    return {
        model.name: {"input": model.input_price, "output": model.output_price}
        for model in MODELS
        if model.input_price is not None and model.output_price is not None
    }
