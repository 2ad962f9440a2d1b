from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.exceptions import api_not_found
from core.health import HealthApi
from core.media import serve_media, serve_thumbnail
from fitting.metrics import metrics_view

# Errors outside the API views (middleware, the event stream, media) in the API's JSON shape
# on API paths; Django's own pages elsewhere.
handler400 = "core.exceptions.bad_request"
handler403 = "core.exceptions.permission_denied"
handler404 = "core.exceptions.page_not_found"
handler500 = "core.exceptions.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the admin's language switch
    path("healthz", HealthApi.as_view(), name="healthz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus, behind METRICS_TOKEN
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("users.urls")),
    path("api/", include("fitting.urls")),
    # Anything else under /api/ (an id that is not a UUID, a typo) answers in the API's shape.
    re_path(r"^api/", api_not_found),
    # Small renditions of stored images, under the same access rules as the images.
    re_path(r"^thumbs/(?P<path>.*)$", serve_thumbnail, name="thumbnail"),
    path("", include("demo.urls")),
]

if getattr(settings, "SERVE_MEDIA", False):
    # The embedded default serves media from the app itself. Off in production, and with
    # MEDIA_STORAGE=s3 (the bucket serves media through pre-signed URLs).
    prefix = settings.MEDIA_URL.lstrip("/")
    urlpatterns += [re_path(rf"^{prefix}(?P<path>.*)$", serve_media)]
