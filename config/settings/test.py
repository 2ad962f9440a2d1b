"""Test settings: the local default, made fast and quiet."""

import os

from config.settings.local import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
# Off by default so that repeated jobs in tests really run; the cache tests turn it on.
FITTING_RESULT_CACHE = False
FITTING_STEP_CACHE = False
# Off by default: the fake Gemini's ok() answers the photo with a marker, which the gate
# rightly rejects as unchanged; the quality-gate tests turn it on.
FITTING_QUALITY_GATE = "off"
FITTING_START_RATE = "1000/minute"
UPLOAD_RATE = "1000/minute"
THUMBNAIL_ANON_RATE = "1000/minute"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not shared-cache memory: threads and processes in tests then see the same
    # WAL-mode database with real locking, as the web process and workers do.
    # One file per test run, so two runs side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test-db-{os.getpid()}.sqlite3")}  # noqa: F405
