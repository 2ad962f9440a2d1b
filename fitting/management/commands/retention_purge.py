from django.core.management.base import BaseCommand

from fitting.retention import retention_purge


class Command(BaseCommand):
    help = (
        "Delete finished jobs, result images and photos older than FITTING_RETENTION_DAYS, "
        "and media files no row names that are older than a day."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="override FITTING_RETENTION_DAYS")
        parser.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")

    def handle(self, *args, days=None, dry_run=False, **options):
        counts = retention_purge(days=days, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {counts['jobs']} job(s) and {counts['photos']} photo(s)")
        self.stdout.write(f"{verb} {counts['orphanFiles']} orphan file(s) (named by no row, older than a day)")
