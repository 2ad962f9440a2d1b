from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DemoConfig(AppConfig):
    """The demo page (/, with its session login) and ``seed_demo``: a client of the API, not part of it."""

    name = "demo"
    verbose_name = _("Demo")
