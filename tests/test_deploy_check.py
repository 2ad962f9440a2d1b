import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
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
