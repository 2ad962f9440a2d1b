"""Import the catalogue from a JSON or CSV product feed (a file or an http(s) URL)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from fitting.catalogue import CREATED, UNCHANGED, UPDATED, FeedError, ImportReport, feed_load, item_import


class Command(BaseCommand):
    help = (
        "Create or update catalogue items from a product feed: FILE or an http(s) URL, JSON (a list of "
        'objects, or {"items": [...]}) or CSV with a header; fields external_id (or externalId, id), name, '
        "category (top, bottom, outer) and image_url (or imageUrl, image). Items are matched by external id; "
        "each image is downloaded (address checks, timeouts, FITTING_IMPORT_MAX_IMAGE_BYTES) and checked as "
        "the admin checks an upload. A row that cannot be imported is skipped with its reason and the rest go "
        "on. A progress bar goes to stderr; stdout has one line per skipped or deactivated item and a summary. "
        "Exit status 1 only when the feed itself cannot be read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", metavar="FILE|URL", help="the feed: a file path or an http(s) URL")
        parser.add_argument("--format", choices=("json", "csv"), help="the feed's format (default: guessed)")
        parser.add_argument(
            "--deactivate-missing",
            action="store_true",
            help="deactivate the active items whose external id the feed does not name "
            "(items without an external id are never touched)",
        )
        parser.add_argument("--dry-run", action="store_true", help="download and check everything; write nothing")

    def handle(self, *args, **options) -> None:
        try:
            rows = feed_load(options["source"], fmt=options["format"])
            # The wrapped stream itself: Django's OutputWrapper would end each of tqdm's "\r" updates with a newline.
            with tqdm(total=len(rows), unit="item", file=self.stderr._out, desc="import") as bar:
                report = item_import(
                    rows=rows,
                    deactivate_missing=options["deactivate_missing"],
                    dry_run=options["dry_run"],
                    on_row=lambda outcome: bar.update(1),
                )
        except FeedError as exc:
            raise CommandError(str(exc)) from exc
        self._report(report)

    def _report(self, report: ImportReport) -> None:
        for outcome in report.skipped:
            self.stdout.write(f"skipped {outcome.row.label}: {outcome.reason}")
        for external_id in report.deactivated:
            self.stdout.write(f"deactivated {external_id}")
        summary = (
            f"created {report.count(CREATED)}, updated {report.count(UPDATED)}, "
            f"unchanged {report.count(UNCHANGED)}, skipped {len(report.skipped)}, "
            f"deactivated {len(report.deactivated)}"
        )
        self.stdout.write(summary + ("; dry run, nothing written" if report.dry_run else ""))
