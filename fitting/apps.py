import importlib
import sys

from django.apps import AppConfig


class FittingConfig(AppConfig):
    name = "fitting"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        if "qcluster" in sys.argv[1:2]:
            # Import the pipeline (and google-genai) once in the cluster's parent process:
            # the forked workers then share those pages instead of each importing its own
            # copy on its first task. Only modules: the client is made per worker process.
            # (Not OpenCV: a library with thread pools should not be loaded before a fork.)
            importlib.import_module("fitting.pipeline")
            if settings.FITTING_ENGINE == "gemini":
                importlib.import_module("fitting.engines.gemini")
