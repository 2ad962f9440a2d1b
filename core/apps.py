from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares and no app owns: errors, images, media files and access, health."""

    name = "core"
