"""The embedded default: SQLite, the ORM broker, local files, the local engine, DEBUG on."""

from config.env import env
from config.settings.base import *  # noqa: F403

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-development-only-not-secret")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
# Webhook receivers on this machine or the local network (a development receiver) are fine here.
FITTING_WEBHOOK_ALLOW_PRIVATE = env.bool("FITTING_WEBHOOK_ALLOW_PRIVATE", default=True)
# Media is served by the app itself in the embedded default (config.urls); a bucket
# (MEDIA_STORAGE=s3) serves its own through pre-signed URLs.
SERVE_MEDIA = MEDIA_STORAGE == "local"  # noqa: F405
# A feed served from this machine can be imported (import_items) while developing.
FITTING_IMPORT_ALLOW_PRIVATE = env.bool("FITTING_IMPORT_ALLOW_PRIVATE", default=True)
# Serve static files straight from the apps in development (no collectstatic needed).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
