"""The fitting app's staff pages, by subject; the site itself, with the report pages
(fitting.dashboard), is the project's (config.admin).

Importing the package registers them (admin autodiscovery imports ``fitting.admin``).
"""

from fitting.admin import catalogue, erasure, jobs, webhooks  # noqa: F401 - registers the ModelAdmins
