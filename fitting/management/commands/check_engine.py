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
        "the setting to change when a model is gone (404), else what to check (credentials, network). "
        "The local engine calls no provider: nothing to ask."
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
        advice = []
        retired = [probe.setting for probe in probes if probe.outcome == "retired"]
        if retired:
            advice.append(
                f"change {', '.join(dict.fromkeys(retired))} to a model the provider serves "
                "(current models: fitting/engines/catalog.py)"
            )
        outcomes = {probe.outcome for probe in probes}
        if "refused" in outcomes:
            advice.append(
                "the provider refused the request (HTTP 400/401/403): check the credentials (GEMINI_API_KEY, "
                "or Vertex AI's project, location and account) and their access to the model"
            )
        if "busy" in outcomes:
            advice.append("the provider is busy or failing: try again later")
        if "silent" in outcomes:
            advice.append(
                f"the provider did not answer ({gemini.endpoint()}): check the network, "
                "GEMINI_BASE_URL and the credentials"
            )
        if advice:
            raise CommandError("; ".join(advice), returncode=1)
