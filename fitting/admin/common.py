"""What the staff pages of the fitting app share: read-only inlines, the job id search."""

from __future__ import annotations

import re

from django.contrib import admin

# A job id or the start of one: at least 4 hex digits, hyphens anywhere (as pasted from logs).
_JOB_ID_PREFIX = re.compile(r"^[0-9a-f-]*$")
_MIN_PREFIX = 4


def job_id_hex(term: str) -> str | None:
    """The hex digits of ``term`` when it can be (the start of) a job id, else None."""
    term = term.strip().lower()
    if not _JOB_ID_PREFIX.match(term):
        return None
    digits = term.replace("-", "")
    return digits if _MIN_PREFIX <= len(digits) <= 32 else None


class ReadOnlyInline(admin.TabularInline):
    """Rows shown, never added, changed or deleted here."""

    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class JobInline(ReadOnlyInline):
    """Read-only rows of a job, shown to whoever may see the job."""

    template = "admin/fitting/tabular_plain.html"  # no "<job id> top" caption over each row
    show_change_link = False

    def has_view_permission(self, request, obj=None):
        return self.admin_site.get_model_admin(self.parent_model).has_view_permission(request, obj)
