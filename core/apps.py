from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares and no app owns: errors, images, media files and access, health."""

    name = "core"

    def ready(self) -> None:
        from core import checks  # noqa: F401 - registers the system checks
