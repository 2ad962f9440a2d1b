"""The project's admin site: Django's, named for the service, with the staff pages that are
not a model's (the dashboard, the estimated cost).

``config.apps.AdminConfig`` makes it the default site, so ``admin.site`` and every
``@admin.register`` in the apps use it.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.utils.translation import gettext_lazy as _

from fitting.dashboard import costs_view, dashboard_view


class AdminSite(admin.AdminSite):
    # The admin names the service, in the staff's language (Korean by default).
    site_header = _("Virtual fitting administration")
    site_title = _("Virtual fitting admin")
    index_title = _("Service administration")
    # No app list beside every page: the job list needs the width (readable at 1400 px).
    enable_nav_sidebar = False

    def get_urls(self):
        # Before Django's own: "fitting/fittingresult/costs/" would otherwise be read as a job id.
        return [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            path(
                "fitting/fittingresult/costs/",
                self.admin_view(costs_view),
                name="fitting_fittingresult_costs",
            ),
            *super().get_urls(),
        ]
