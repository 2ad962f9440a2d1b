from django.core.asgi import get_asgi_application

from config.env import use_settings_module

use_settings_module()

django_application = get_asgi_application()

from config.bodylimit import BodyLimitMiddleware  # noqa: E402 - needs the settings loaded above

# Bodies over REQUEST_MAX_BYTES are refused before Django spools them (config/bodylimit.py).
application = BodyLimitMiddleware(django_application)
