import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def manage(*args, **env):
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FITTING_", "GEMINI_", "GOOGLE_"))
    }
    environment.update({"DJANGO_SETTINGS_MODULE": "config.settings.production", **env})
    environment = {k: v for k, v in environment.items() if v is not None}  # None: unset
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
        SERVE_MEDIA="true",
        REDIS_URL="redis://redis.internal:6379/0",  # named, not reached: the check connects to nothing
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_warns_when_the_rates_are_counted_per_process(tmp_path):
    without_redis = {**PRODUCTION, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": None}
    deploy = manage("check", "--deploy", **without_redis)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr  # a warning, not an error
    assert "core.W001" in deploy.stderr and "REDIS_URL" in deploy.stderr
    assert "core.W001" not in manage("check", **without_redis).stderr  # a deployment warning only


@pytest.mark.parametrize(
    ("backend", "warned"),
    [
        ("django.core.cache.backends.locmem.LocMemCache", True),
        ("django.core.cache.backends.dummy.DummyCache", True),
        ("django.core.cache.backends.redis.RedisCache", False),
    ],
)
def test_the_shared_cache_check_by_backend(settings, backend, warned):
    from core.checks import check_shared_rate_counters

    settings.CACHES = {"default": {"BACKEND": backend, "LOCATION": "redis://redis.invalid:6379/0"}}
    assert [w.id for w in check_shared_rate_counters()] == (["core.W001"] if warned else [])


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
    "SERVE_MEDIA": "true",  # local files, served by the app (the one-machine set-up)
}


def test_production_refuses_to_start_without_an_explicit_engine():
    result = manage("check", DJANGO_SECRET_KEY="x" * 64, DJANGO_ALLOWED_HOSTS="h")  # FITTING_ENGINE unset
    assert result.returncode != 0
    assert result.stderr == (
        "configuration error: FITTING_ENGINE must be set in production ('local', 'gemini' or 'vertex-tryon')\n"
    )


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


def test_production_refuses_local_files_that_nothing_serves():
    env = {**PRODUCTION, "MEDIA_STORAGE": "local"}
    del env["SERVE_MEDIA"]
    result = manage("check", **env)
    assert result.returncode != 0
    assert result.stderr == (
        "configuration error: MEDIA_STORAGE=local needs SERVE_MEDIA=true (the app serves photos and results "
        "to their owners), or set MEDIA_STORAGE=s3: otherwise no image URL can be loaded\n"
    )


def env_file(tmp_path, text: str):
    path = tmp_path / "fitting.env"
    path.write_text(text)
    return path


def example_env(tmp_path, *, one_machine: bool = False):
    """deploy/fitting.env.example as an operator fills it in: every change-me replaced; with
    ``one_machine`` the bucket block swapped for the local-files block the file offers."""
    import secrets

    text = (ROOT / "deploy" / "fitting.env.example").read_text()
    text = "".join(
        f"{secrets.token_urlsafe(50)}{part}" if n else part for n, part in enumerate(text.split("change-me"))
    )
    if one_machine:
        lines = []
        for line in text.splitlines():
            if line.startswith(("MEDIA_STORAGE=s3", "AWS_")):
                continue
            lines.append(line.removeprefix("# ") if line.startswith(("# MEDIA_", "# SERVE_MEDIA")) else line)
        text = "\n".join(lines) + "\n"
    return env_file(tmp_path, text)


@pytest.mark.parametrize("one_machine", [False, True], ids=["bucket", "one-machine"])
def test_the_deploy_env_example_filled_in_passes_check_deploy(tmp_path, one_machine):
    # DATABASE_URL and REDIS_URL name hosts that do not exist: the check connects to neither.
    path = example_env(tmp_path, one_machine=one_machine)
    settings = "from django.conf import settings as s; print('GOT', s.MEDIA_STORAGE, s.SERVE_MEDIA, s.DEBUG)"
    from_file = {"DJANGO_ENV_FILE": str(path), "DJANGO_SETTINGS_MODULE": None}  # the file chooses the settings
    result = manage("check", "--deploy", "--fail-level", "WARNING", **from_file)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = manage("shell", "-c", settings, **from_file).stdout
    expected = "GOT local True False" if one_machine else "GOT s3 False False"
    assert expected in shown.splitlines(), shown


def test_the_settings_module_named_in_the_env_file_is_the_one_used(tmp_path):
    path = env_file(tmp_path, "DJANGO_SETTINGS_MODULE=config.settings.production\n")
    result = manage("check", DJANGO_ENV_FILE=str(path), DJANGO_SETTINGS_MODULE=None)  # production: no secret key
    assert result.returncode != 0
    assert result.stderr == "configuration error: DJANGO_SECRET_KEY must be set\n"


def test_the_environment_wins_over_the_env_file(tmp_path):
    path = env_file(tmp_path, "DJANGO_SETTINGS_MODULE=config.settings.production\n")
    result = manage("check", DJANGO_ENV_FILE=str(path), DJANGO_SETTINGS_MODULE="config.settings.local")
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_env_file_that_is_not_there_stops_at_start(tmp_path):
    result = manage("check", DJANGO_ENV_FILE=str(tmp_path / "missing.env"), DJANGO_SETTINGS_MODULE=None)
    assert result.returncode != 0
    assert (
        result.stderr == f"configuration error: DJANGO_ENV_FILE names no readable file: '{tmp_path / 'missing.env'}'\n"
    )
