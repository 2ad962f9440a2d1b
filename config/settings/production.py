"""Production: chosen explicitly (DJANGO_SETTINGS_MODULE=config.settings.production).

Refuses to start without a secret key, allowed hosts and an explicitly chosen engine.
"""

from config.env import config_error, env, required
from config.settings.base import *  # noqa: F403

DEBUG = False
SECRET_KEY = required("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = [host.strip() for host in required("DJANGO_ALLOWED_HOSTS").split(",") if host.strip()]
# No silent default: a worker that quietly fell back to the local engine would fail every
# Gemini job as ENGINE_MISMATCH (and a web process would start local jobs nobody wanted).
if not env.str("FITTING_ENGINE", default=""):
    config_error("FITTING_ENGINE must be set in production ('local', 'gemini' or 'vertex-tryon')")
if FITTING_IMPORT_ALLOW_PRIVATE:  # noqa: F405
    config_error("FITTING_IMPORT_ALLOW_PRIVATE cannot be set in production: feeds come from public addresses")
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=False)
if SERVE_MEDIA and MEDIA_STORAGE != "local":  # noqa: F405
    config_error("SERVE_MEDIA serves local files: with MEDIA_STORAGE=s3 the bucket serves media, unset it")
# Local files have one way out: the app's own view (core/media.py), which shows a photo or a
# result to its owner only; a proxy serving MEDIA_ROOT would show them to anyone. Without it
# every job completes and every image URL it returns is a 404.
if MEDIA_STORAGE == "local" and not SERVE_MEDIA:  # noqa: F405
    config_error(
        "MEDIA_STORAGE=local needs SERVE_MEDIA=true (the app serves photos and results to their "
        "owners), or set MEDIA_STORAGE=s3: otherwise no image URL can be loaded"
    )

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# A load balancer's or orchestrator's probe speaks plain HTTP to the process: no redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# The preload list requires a max-age of at least a year: a shorter one is sent without preload.
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS >= 60 * 60 * 24 * 365
SECURE_CONTENT_TYPE_NOSNIFF = True
