"""The one django-environ ``env`` every settings module reads from."""

import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def config_error(message: str) -> None:
    """Stop at start with one clear line, not a traceback from deep inside Django."""
    sys.stderr.write(f"configuration error: {message}\n")
    raise SystemExit(2)


def read_env_file() -> None:
    """Add the variables of an env file to the environment; a variable already set wins.

    The file is DJANGO_ENV_FILE when set (a command run by hand reads the systemd units' file:
    ``DJANGO_ENV_FILE=/etc/fitting/fitting.env manage.py migrate``), else the checkout's
    ``.env`` if there is one (a convenience for development).
    """
    named = os.environ.get("DJANGO_ENV_FILE", "")
    if named and not (Path(named).is_file() and os.access(named, os.R_OK)):
        config_error(f"DJANGO_ENV_FILE names no readable file: {named!r}")
    environ.Env.read_env(named or BASE_DIR / ".env", overwrite=False)


def use_settings_module() -> None:
    """Choose the settings module: DJANGO_SETTINGS_MODULE from the environment, else from the
    env file, else the local settings (the embedded default). Every entry point (manage.py,
    asgi.py, wsgi.py, config.serve) calls this before Django reads its settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


# Read on import, so before DJANGO_SETTINGS_MODULE is looked at: a value in the file counts.
read_env_file()


def required(name: str) -> str:
    """A variable that has no default (production secrets): missing or empty stops the process."""
    value = env.str(name, default="")
    if not value:
        config_error(f"{name} must be set")
    return value


def url_with_query_defaults(url: str, **defaults) -> str:
    """``url`` with each of ``defaults`` added to its query string, unless the URL sets it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    query += [(name, str(value)) for name, value in defaults.items() if name not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))
