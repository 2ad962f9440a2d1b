"""The one django-environ ``env`` every settings module reads from."""

import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is a convenience for development; real deployments set the environment.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def config_error(message: str) -> None:
    """Stop at start with one clear line, not a traceback from deep inside Django."""
    sys.stderr.write(f"configuration error: {message}\n")
    raise SystemExit(2)


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
