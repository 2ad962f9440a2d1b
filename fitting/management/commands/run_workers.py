"""Run the qcluster so that a SIGTERM or Ctrl-C to the whole process group stops it gracefully.

django-q2's cluster stops gracefully when only its main process gets SIGTERM: it stops taking
tasks and lets each worker finish its running step. A signal that reaches every process of the
group at once (Ctrl-C in a terminal, `timeout`, honcho, systemd's default KillMode) also hits the
workers mid-step and can leave the main process waiting forever. This command starts the cluster
in a session of its own, so such a signal reaches only this process, and passes it on to the
cluster's main process alone; it exits with the cluster's exit status.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Command(BaseCommand):
    help = "Run `manage.py qcluster`; SIGTERM/SIGINT/SIGHUP to this process or its group stop it gracefully."

    def handle(self, *args, **options):
        cluster = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "qcluster"],
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )

        def stop(signum, frame):
            if cluster.poll() is None:
                cluster.send_signal(signal.SIGTERM)  # the main process only: its workers finish their steps

        for signum in FORWARDED:
            signal.signal(signum, stop)
        sys.exit(cluster.wait())
