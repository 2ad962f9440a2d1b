"""2b. SQL queries per request, at two data sizes (10 and 200 jobs of the caller).

In process: Django's test client on a temporary SQLite file, queries captured with
``CaptureQueriesContext``. A fixed count (the same at both sizes) is the target: no N+1.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

from bench.common import NO_STAND_INS, Row, log, main, met, require

SIZES = (10, 200)


def run() -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-queries-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "MEDIA_ROOT": str(tmp / "media"),
            # 200 POSTs of one user: the daily quota (100) would answer 429 QUOTA_EXCEEDED from the
            # 101st on; the caches and rates would answer without the work.
            **NO_STAND_INS,
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from fitting.models import FittingResult, FittingResultImage, Item, Status
    from users.models import UserImage
    from users.services import token_issue

    call_command("migrate", verbosity=0)
    from django.test import override_settings

    with override_settings(DEBUG=True):  # seed_demo runs only with DEBUG on; the bench keeps it off
        call_command("seed_demo", stdout=io.StringIO())
    user = get_user_model().objects.get(username="demo")
    _, token = token_issue(user=user)
    photo = UserImage.objects.filter(owner=user).first()
    items = {c: Item.objects.filter(category=c).order_by("id").first() for c in ("top", "bottom", "outer")}
    body = json.dumps(
        {
            "userPhotoUrl": photo.image.url,
            "items": [{"itemId": i.id, "category": c} for c, i in items.items()],
        }
    )
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")

    def count(method: str, path: str, **kwargs) -> tuple[int, list[str], int]:
        with CaptureQueriesContext(connection) as captured:
            response = getattr(client, method)(path, **kwargs)
        return (
            len(captured.captured_queries),
            [q["sql"][:110] for q in captured.captured_queries],
            response.status_code,
        )

    counts: dict[str, list[int]] = {}
    for size in SIZES:
        while FittingResult.objects.filter(owner=user).count() < size:
            response = client.post("/api/virtual-fitting", body, content_type="application/json")
            require(
                response.status_code == 202,
                f"setting up {size} jobs: {response.status_code} {response.content[:200]!r}",
            )
        # Half of them completed with their step and final images, as real data would be.
        for job in FittingResult.objects.filter(owner=user, status=Status.PROCESSING)[: size // 2]:
            for step in ("top", "bottom", "outer", "final"):
                FittingResultImage.objects.get_or_create(
                    job=job, step=step, defaults={"image": photo.image.name, "width": 1, "height": 1}
                )
            FittingResult.objects.filter(id=job.id).update(status=Status.COMPLETED)
        job = FittingResult.objects.filter(owner=user, status=Status.COMPLETED).first()
        probes = {
            "POST /api/virtual-fitting": (
                "post",
                "/api/virtual-fitting",
                {"data": body, "content_type": "application/json"},
            ),
            "GET /api/virtual-fitting/<id>": ("get", f"/api/virtual-fitting/{job.id}", {}),
            "GET /api/virtual-fitting (page of 20)": ("get", "/api/virtual-fitting", {}),
            "GET /healthz": ("get", "/healthz", {}),
        }
        for name, (method, path, kwargs) in probes.items():
            n, sqls, status = count(method, path, **kwargs)
            require(status < 300, f"{name} answered {status}: its queries are not those of the work")
            counts.setdefault(name, []).append(n)
            if size == SIZES[0] and name.startswith("POST"):
                log(f"[queries] {name}: {n} queries")
                for sql in sqls:
                    log("    " + sql)
    rows = []
    for name, values in counts.items():
        fixed = len(set(values)) == 1
        log(f"[queries] {name}: " + ", ".join(f"{v} at {s} jobs" for v, s in zip(values, SIZES)))
        rows.append(
            Row(
                f"2b. SQL queries per request: {name}",
                " / ".join(f"{v}" for v in values) + f" (at {SIZES[0]} / {SIZES[1]} jobs)",
                "fixed",
                met(fixed),
            )
        )
    return rows


if __name__ == "__main__":
    main(run)
