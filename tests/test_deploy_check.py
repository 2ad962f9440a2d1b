import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FITTING_", "GEMINI_", "GOOGLE_"))
    }
    environment.update(DJANGO_SETTINGS_MODULE="config.settings.production", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="x" * 64 + "-a-long-random-production-secret",
        DJANGO_ALLOWED_HOSTS="fitting.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        FITTING_ENGINE="local",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = manage("check", DJANGO_ALLOWED_HOSTS="fitting.example.com")
    assert result.returncode != 0
    assert result.stderr == "configuration error: DJANGO_SECRET_KEY must be set\n"


def test_production_refuses_to_start_without_allowed_hosts():
    result = manage("check", DJANGO_SECRET_KEY="x" * 64)
    assert result.returncode != 0
    assert result.stderr == "configuration error: DJANGO_ALLOWED_HOSTS must be set\n"


def test_gemini_without_a_key_fails_at_start_in_one_line():
    result = manage(
        "check",
        DJANGO_SECRET_KEY="x" * 64,
        DJANGO_ALLOWED_HOSTS="h",
        FITTING_ENGINE="gemini",
        GEMINI_API_KEY="",
        GOOGLE_API_KEY="",
    )
    assert result.returncode != 0
    assert result.stderr == "configuration error: FITTING_ENGINE=gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY)\n"


PRODUCTION = {
    "DJANGO_SECRET_KEY": "x" * 64 + "-a-long-random-production-secret",
    "DJANGO_ALLOWED_HOSTS": "fitting.example.com",
    "FITTING_ENGINE": "local",
}


def test_production_refuses_to_start_without_an_explicit_engine():
    result = manage("check", DJANGO_SECRET_KEY="x" * 64, DJANGO_ALLOWED_HOSTS="h")  # FITTING_ENGINE unset
    assert result.returncode != 0
    assert result.stderr == "configuration error: FITTING_ENGINE must be set in production ('local' or 'gemini')\n"


def test_production_refuses_private_feed_addresses():
    result = manage("check", FITTING_IMPORT_ALLOW_PRIVATE="true", **PRODUCTION)
    assert result.returncode != 0
    assert result.stderr == (
        "configuration error: FITTING_IMPORT_ALLOW_PRIVATE cannot be set in production: "
        "feeds come from public addresses\n"
    )


def production_shell(code: str, tmp_path, **env) -> str:
    result = manage("shell", "-c", code, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", **PRODUCTION, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_healthz_answers_a_plain_http_probe_and_everything_else_redirects_to_https(tmp_path):
    out = production_shell(
        "from django.test import Client\n"
        "client = Client(HTTP_HOST='fitting.example.com')\n"
        "for path in ('/healthz', '/api/items', '/'):\n"
        "    response = client.get(path)\n"
        "    print('GOT', path, response.status_code, response.get('Location', '-'))\n",
        tmp_path,
    )
    got = {line.split()[1]: line.split()[2:] for line in out.splitlines() if line.startswith("GOT ")}
    assert got["/healthz"][0] in ("200", "503")  # answered (this database is not migrated), not redirected
    assert got["/api/items"] == ["301", "https://fitting.example.com/api/items"]
    assert got["/"] == ["301", "https://fitting.example.com/"]


def hsts(tmp_path, **env) -> tuple[str, str]:
    out = production_shell(
        "from django.conf import settings\nprint('HSTS', settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_PRELOAD)",
        tmp_path,
        **env,
    )
    return tuple(next(line for line in out.splitlines() if line.startswith("HSTS ")).split()[1:])


def test_hsts_preload_only_with_a_max_age_of_at_least_a_year(tmp_path):
    assert hsts(tmp_path) == ("31536000", "True")  # the default: a year, preload
    assert hsts(tmp_path, DJANGO_SECURE_HSTS_SECONDS="63072000") == ("63072000", "True")
    assert hsts(tmp_path, DJANGO_SECURE_HSTS_SECONDS="2592000") == ("2592000", "False")  # a month: no preload
