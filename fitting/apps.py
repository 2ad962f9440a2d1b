import importlib
import sys

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FittingConfig(AppConfig):
    name = "fitting"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = _("Virtual fitting")

    def ready(self) -> None:
        from django.conf import settings

        from core.media import MediaKind, media_register
        from fitting import checks  # noqa: F401 - registers the system checks
        from fitting.models import ATTEMPTS_DIR, ITEMS_DIR, RESULTS_DIR, FittingResultImage, Item, StepAttempt

        media_register(MediaKind(ITEMS_DIR, Item))  # the catalogue is public
        # Result images are shown on the job's admin page, so either view permission admits staff.
        media_register(
            MediaKind(
                RESULTS_DIR,
                FittingResultImage,
                owner_lookup="job__owner",
                staff_permissions=("fitting.view_fittingresult", "fitting.view_fittingresultimage"),
            )
        )
        # The quality gate's rejected attempts: staff see them on the job's admin page.
        media_register(
            MediaKind(
                ATTEMPTS_DIR,
                StepAttempt,
                owner_lookup="job__owner",
                staff_permissions=("fitting.view_fittingresult", "fitting.view_stepattempt"),
            )
        )

        if "qcluster" in sys.argv[1:2]:
            # Import the pipeline (and google-genai) once in the cluster's parent process:
            # the forked workers then share those pages instead of each importing its own
            # copy on its first task. Only modules: the client is made per worker process.
            # (Not OpenCV: a library with thread pools should not be loaded before a fork.)
            importlib.import_module("fitting.pipeline")
            if settings.FITTING_ENGINE in ("gemini", "vertex-tryon"):  # both call Google through google-genai
                gemini = importlib.import_module("fitting.engines.gemini")
                # Once per node, before it takes tasks: the operator sees at start whether the
                # provider serves the configured models (it logs; it never refuses to start).
                gemini.log_model_probe()
