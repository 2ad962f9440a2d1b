"""Ask the provider whether it serves each model the configured engine calls."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fitting.engines.identity import GENERATIVE_ENGINES


class Command(BaseCommand):
    help = (
        "Ask the provider (the Gemini API, Vertex AI or GEMINI_BASE_URL) for each model the configured "
        "engine (gemini or vertex-tryon) calls (models.get) and print one line per model: served, or "
        "not served with the HTTP status. Exit status 0 when every model is served, 1 otherwise, naming "
        "the setting to change. The local engine calls no provider: nothing to ask."
    )
    # The lifecycle warnings (fitting.W001…) are dates; this command is the provider's answer.
    requires_system_checks = []

    def handle(self, *args, **options) -> None:
        if settings.FITTING_ENGINE not in GENERATIVE_ENGINES:
            self.stdout.write(f"FITTING_ENGINE={settings.FITTING_ENGINE}: no provider model to check")
            return

        from fitting.engines import gemini  # google-genai loads only here

        probes = gemini.probe_models()
        for probe in probes:
            line = f"{probe} via {gemini.endpoint()}"
            self.stdout.write(self.style.SUCCESS(line) if probe.served else self.style.ERROR(line))
        missing = [probe for probe in probes if not probe.served]
        if missing:
            settings_to_change = ", ".join(dict.fromkeys(probe.setting for probe in missing if probe.status))
            if settings_to_change:
                raise CommandError(
                    f"change {settings_to_change} to a model the provider serves "
                    "(current models: fitting/engines/catalog.py)",
                    returncode=1,
                )
            raise CommandError(
                f"the provider did not answer ({gemini.endpoint()}): check the network, "
                "GEMINI_BASE_URL and the credentials",
                returncode=1,
            )
