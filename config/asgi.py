import gc

from django.conf import settings
from django.core.asgi import get_asgi_application

from config.env import use_settings_module

use_settings_module()

django_application = get_asgi_application()

from config.bodylimit import BodyLimitMiddleware  # noqa: E402 - needs the settings loaded above

# Bodies over REQUEST_MAX_BYTES are refused before Django spools them (config/bodylimit.py).
application = BodyLimitMiddleware(django_application)

# The web process's garbage collector (bench/README.md §8): what was loaded at start (Django, the
# apps, their modules) is never garbage; frozen, no full collection walks it again. And a
# change fanned out to thousands of event streams allocates a few objects per stream that die
# within the same pass of the loop: with Python's default first threshold (700) the collector
# runs dozens of times during that pass and walks them all while they are still alive.
gc.freeze()
if settings.WEB_GC_THRESHOLD:
    gc.set_threshold(settings.WEB_GC_THRESHOLD, *gc.get_threshold()[1:])
