"""Re-run failed or timed-out jobs, through the same service as the admin's actions."""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from fitting.engines import engine_identity
from fitting.engines.identity import ENGINE_NAMES
from fitting.errors import JobEngineMismatchError, NotReprocessableError
from fitting.models import FittingResult, Status
from fitting.selectors import fitting_failed_list, fitting_with_id_prefix
from fitting.services.lifecycle import fitting_reprocess, fitting_reprocess_switch

DEFAULT_STATUSES = [status.value for status in Status.reprocessable()]
# A canceled job was stopped on purpose: it runs again only when named by its JOB_ID.
STATUS_CHOICES = [status.value for status in Status.reprocessable(named=True)]
MIN_PREFIX = 8  # hex digits of a job id prefix: the admin's short id
MAX_LISTED = 10  # jobs listed for an ambiguous prefix


@dataclass
class Tally:
    reprocessed: int = 0
    completed: int = 0
    failed_again: int = 0
    skipped: int = 0
    not_found: int = 0
    # Jobs pinned to another engine than this process's, without --engine: exit status 1.
    engine_refused: int = 0
    # Jobs named on the command line that were not reprocessed: they make the exit status 1.
    named_missed: list[str] = field(default_factory=list)


def _positive(kind: type[int] | type[float]):
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, not {value!r}")
        return number

    return parse


class Command(BaseCommand):
    help = (
        "Reprocess failed or timed-out fitting jobs as a new attempt with a fresh time budget, "
        "resuming from the failed step with the images already made (--restart: from scratch). "
        "A canceled job is reprocessed only when named by its JOB_ID. "
        "Jobs are taken oldest failure first (by when they last ended), so a job that fails again "
        "goes to the back and repeated --limit batches work through the backlog. Prints one line "
        "per job and a summary. Exit status 1 when, with --sync, a job fails again, or when a "
        "JOB_ID named on the command line is unknown or was not reprocessed, or when a job is pinned "
        "to another engine than this process's (FITTING_ENGINE, its model and prompt version) and "
        "--engine does not name one to switch to; otherwise 0."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "job_ids",
            nargs="*",
            metavar="JOB_ID",
            help="only these jobs: full ids, or their first 8 or more hex digits as the admin shows them "
            "(an ambiguous prefix stops the command, listing its matches); before --status",
        )
        parser.add_argument(
            "--status",
            nargs="+",
            choices=STATUS_CHOICES,
            help="statuses to select (default: failed timeout; with JOB_IDs: failed timeout canceled). "
            "canceled is only accepted with JOB_IDs",
        )
        parser.add_argument(
            "--since", type=_positive(float), metavar="HOURS", help="only jobs created in the last HOURS"
        )
        parser.add_argument("--limit", type=_positive(int), metavar="N", help="at most N jobs, oldest failure first")
        parser.add_argument(
            "--restart", action="store_true", help="start from the first step, dropping the step images"
        )
        parser.add_argument("--dry-run", action="store_true", help="list what would be done; write nothing")
        parser.add_argument(
            "--engine",
            choices=ENGINE_NAMES,
            help="switch each job to this engine (recording its model and prompt version, restarting from "
            "scratch when it changes); with --sync, run them with it. Without it, a job pinned to another "
            "engine than this process's is refused",
        )
        parser.add_argument(
            "--sync",
            action="store_true",
            help="run each job here, one after the other, instead of enqueueing it for the workers",
        )

    def handle(self, *args, **options) -> None:
        named, unparsable = self._parse_ids(options["job_ids"])
        statuses = options["status"] or (STATUS_CHOICES if options["job_ids"] else DEFAULT_STATUSES)
        if Status.CANCELED in statuses and not options["job_ids"]:
            raise CommandError("canceled jobs are reprocessed only when named: give their JOB_IDs")
        since = options["since"]
        jobs = fitting_failed_list(
            statuses=statuses,
            created_since=timezone.now() - timedelta(hours=since) if since else None,
            job_ids=named if options["job_ids"] else None,
        )
        if options["limit"]:
            jobs = jobs[: options["limit"]]
        selected = list(jobs)

        tally = Tally()
        for raw in unparsable:
            self._not_found(tally, raw)
        self._report_unselected(tally, named, {job.id for job in selected})
        for job in selected:
            self._reprocess(
                tally,
                job,
                named=job.id in named,
                restart=options["restart"],
                dry_run=options["dry_run"],
                sync=options["sync"],
                engine=options["engine"],
            )
        self._summary(tally, dry_run=options["dry_run"], sync=options["sync"])

        if tally.failed_again or tally.named_missed or tally.engine_refused:
            reasons = []
            if tally.failed_again:
                reasons.append(f"{tally.failed_again} job(s) failed again")
            if tally.engine_refused:
                reasons.append(f"{tally.engine_refused} job(s) pinned to another engine (--engine NAME switches)")
            if tally.named_missed:
                reasons.append(f"not reprocessed: {', '.join(tally.named_missed)}")
            raise CommandError("; ".join(reasons))

    # --- selection ----------------------------------------------------------------------------
    def _parse_ids(self, raw_ids: list[str]) -> tuple[set[uuid.UUID], list[str]]:
        """Full ids, and prefixes of at least MIN_PREFIX hex digits (the admin shows 8).

        A prefix that matches no job is reported as not found; one that matches several
        stops the command before anything is done, listing them.
        """
        parsed, unparsable, ambiguous = set(), [], []
        for raw in raw_ids:
            try:
                parsed.add(uuid.UUID(raw))
                continue
            except ValueError:
                pass
            digits = raw.strip().lower().replace("-", "")
            if not (MIN_PREFIX <= len(digits) < 32 and all(c in "0123456789abcdef" for c in digits)):
                unparsable.append(raw)
                continue
            matches = list(
                fitting_with_id_prefix(FittingResult.objects.all(), digits).order_by("created_at")[:MAX_LISTED]
            )
            if not matches:
                unparsable.append(raw)
            elif len(matches) == 1:
                parsed.add(matches[0].id)
            else:
                listed = ", ".join(f"{job.id} ({job.status})" for job in matches)
                ambiguous.append(f"{raw} matches {listed}")
        if ambiguous:
            raise CommandError("ambiguous job id prefix: " + "; ".join(ambiguous) + ". Give more digits.")
        return parsed, unparsable

    def _not_found(self, tally: Tally, raw: str) -> None:
        self.stdout.write(f"{raw} -> not found")
        tally.not_found += 1
        tally.named_missed.append(raw)

    def _report_unselected(self, tally: Tally, named: set[uuid.UUID], selected: set[uuid.UUID]) -> None:
        """Say why each job named on the command line is not in the selection."""
        missing = named - selected
        existing = {job.id: job for job in FittingResult.objects.filter(id__in=missing)}
        for job_id in sorted(missing, key=str):
            job = existing.get(job_id)
            if job is None:
                self._not_found(tally, str(job_id))
                continue
            if job.status in STATUS_CHOICES:
                reason = "skipped: not selected by --status/--since/--limit"
            else:
                reason = "skipped: not reprocessable (only failed, timed-out or canceled jobs are)"
            self.stdout.write(f"{job.id} {job.status} -> {reason}")
            tally.skipped += 1
            tally.named_missed.append(str(job.id))

    # --- one job ------------------------------------------------------------------------------
    def _reprocess(
        self,
        tally: Tally,
        job: FittingResult,
        *,
        named: bool,
        restart: bool,
        dry_run: bool,
        sync: bool,
        engine: str | None,
    ) -> None:
        head = f"{job.id} {job.status} failed_step={job.failed_step or '-'} code={job.error_code or '-'}"
        step = job.first_unfinished_step() or "message"
        if job.user_image_id is None:  # fitting_reprocess refuses it (JobPhotoDeletedError)
            self.stdout.write(f"{head} -> skipped: its photo was deleted by its owner")
            tally.skipped += 1
            if named:
                tally.named_missed.append(str(job.id))
            return
        try:
            switch = fitting_reprocess_switch(job=job, engine=engine)
        except JobEngineMismatchError:
            self._engine_refused(tally, head, job, named=named)
            return
        restart = restart or switch is not None
        if switch is not None:
            head += f" engine {job.engine}->{switch.name}"
        if dry_run:
            self.stdout.write(f"{head} -> would " + ("restart" if restart else f"resume from {step}"))
            tally.reprocessed += 1
            return
        try:
            job = fitting_reprocess(job=job, restart=restart, enqueue=not sync, engine=engine, allow_canceled=named)
        except JobEngineMismatchError:  # FITTING_ENGINE cannot change meanwhile; kept for safety
            self._engine_refused(tally, head, job, named=named)
            return
        except NotReprocessableError:  # changed since it was selected (another operator, the admin)
            self.stdout.write(f"{head} -> skipped: no longer reprocessable")
            tally.skipped += 1
            if named:
                tally.named_missed.append(str(job.id))
            return
        tally.reprocessed += 1
        done = "restarted" if restart else f"resumed from {step}"
        if not sync:
            self.stdout.write(f"{head} -> {done}, enqueued as attempt {job.attempt}")
            return

        from fitting.pipeline import run_job  # the engine loads only when jobs run here

        run_job(job_id=str(job.id), attempt=job.attempt, engine=engine)
        job.refresh_from_db()
        if job.status == Status.COMPLETED:
            tally.completed += 1
            self.stdout.write(f"{head} -> {done}, completed as attempt {job.attempt}")
        else:
            tally.failed_again += 1
            self.stdout.write(
                self.style.ERROR(
                    f"{head} -> {done}, FAILED again: {job.error_code or job.status} "
                    f"at {job.failed_step or '-'} (attempt {job.attempt})"
                )
            )

    def _engine_refused(self, tally: Tally, head: str, job: FittingResult, *, named: bool) -> None:
        self.stdout.write(
            self.style.ERROR(
                f"{head} -> refused: pinned to {job.engine_identity}, this process runs {engine_identity()}; "
                "--engine NAME switches it to NAME as configured here (restarting it if that changes "
                "its engine, model or prompt version)"
            )
        )
        tally.engine_refused += 1
        if named:
            tally.named_missed.append(str(job.id))

    def _summary(self, tally: Tally, *, dry_run: bool, sync: bool) -> None:
        if dry_run:
            parts = [f"dry run: {tally.reprocessed} would be reprocessed"]
        elif sync:
            parts = [
                f"{tally.reprocessed} reprocessed",
                f"{tally.completed} completed",
                f"{tally.failed_again} failed again",
            ]
        else:
            parts = [f"{tally.reprocessed} reprocessed (enqueued)"]
        parts += [f"{tally.skipped} skipped", f"{tally.not_found} not found"]
        if tally.engine_refused:
            parts.append(f"{tally.engine_refused} refused (another engine)")
        self.stdout.write(", ".join(parts) + ("; nothing written" if dry_run else ""))
