"""Compare prompt versions offline: every case under every version, checked and reported."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from fitting.evaluation import EvaluationError, check_versions, evaluate, load_cases


class Command(BaseCommand):
    help = (
        "Run every case of DIR/cases.json under every prompt version through the Gemini engine (no jobs are "
        "made), check each answer with the quality checks (and the judge when FITTING_QUALITY_JUDGE=gemini), "
        "and write report.html, report.json and results.csv into --out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cases", required=True, type=Path, help="a directory with cases.json")
        parser.add_argument("--versions", required=True, help="prompt versions, comma-separated (e.g. v4,v5)")
        parser.add_argument("--samples", type=int, default=1, help="runs per case and version (default 1)")
        parser.add_argument("--max-calls", type=int, default=None, help="stop before exceeding this many calls")
        parser.add_argument("--out", required=True, type=Path, help="the report's directory (made if missing)")

    def handle(self, *args, **options) -> None:
        versions = [v.strip() for v in options["versions"].split(",") if v.strip()]
        if options["samples"] < 1 or (options["max_calls"] is not None and options["max_calls"] < 1):
            raise CommandError("--samples and --max-calls must be at least 1")
        try:
            check_versions(versions)
            cases = load_cases(options["cases"])
            steps = sum(len(case.garments) for case in cases) * len(versions) * options["samples"]
            # Each step: up to 1 + FITTING_QUALITY_RETRIES attempts, each an image call and a judge call.
            attempts = steps * (1 + settings.FITTING_QUALITY_RETRIES)
            calls = attempts * (2 if settings.FITTING_QUALITY_JUDGE == "gemini" else 1)
            if options["max_calls"] is not None:
                calls = min(calls, options["max_calls"])
            bound = "" if options["max_calls"] is not None else " (more if the provider's errors are retried)"
            self.stdout.write(
                f"{len(cases)} case(s) × {len(versions)} version(s) × {options['samples']} sample(s): "
                f"{steps} step(s) on {settings.GEMINI_IMAGE_MODEL}, at most {calls} call(s) in all{bound}"
            )
            # The wrapped stream itself: Django's OutputWrapper would end each of tqdm's "\r" updates with a newline.
            with tqdm(total=calls, unit="call", file=self.stderr._out, desc="evaluate") as bar:
                run = evaluate(
                    cases=cases,
                    versions=versions,
                    samples=options["samples"],
                    max_calls=options["max_calls"],
                    out=options["out"],
                    on_call=lambda made: bar.update(made - bar.n),
                )
        except EvaluationError as exc:
            raise CommandError(str(exc)) from exc
        if run.stopped:
            self.stderr.write(f"Incomplete: {run.stopped}.")
        self.stdout.write(f"{run.calls} call(s); report: {options['out'] / 'report.html'}")
