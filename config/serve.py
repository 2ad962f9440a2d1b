"""Start uvicorn as every deployment does: ``python -m config.serve [uvicorn options]``.

uvicorn believes X-Forwarded-For and X-Forwarded-Proto from 127.0.0.1 unless told otherwise,
so without a proxy a local client could choose its own address for the login limits. Here the
settings decide: TRUSTED_PROXY_COUNT=0 turns proxy headers off; otherwise they are believed from
FORWARDED_ALLOW_IPS only. The systemd unit, the Procfile (``make run``) and the tests start the
app through this, with the rest of uvicorn's options (host, port, workers) after it.
"""

import os
import sys


def uvicorn_arguments() -> list[str]:
    """uvicorn's proxy options for the current settings."""
    from django.conf import settings

    if settings.TRUSTED_PROXY_COUNT == 0:
        return ["--no-proxy-headers"]
    return ["--proxy-headers", "--forwarded-allow-ips", settings.FORWARDED_ALLOW_IPS]


PROXY_OPTIONS = ("--proxy-headers", "--no-proxy-headers", "--forwarded-allow-ips")


def main() -> None:
    from config.env import config_error, use_settings_module

    if any(arg.split("=", 1)[0] in PROXY_OPTIONS for arg in sys.argv[1:]):
        config_error("set TRUSTED_PROXY_COUNT and FORWARDED_ALLOW_IPS instead of uvicorn's proxy options")
    use_settings_module()
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application", *uvicorn_arguments(), *sys.argv[1:]]
    # The same process id: systemd and honcho signal uvicorn itself.
    os.execv(sys.executable, command)  # noqa: S606 - our own interpreter, fixed arguments


if __name__ == "__main__":
    main()
