from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from fitting.apis import HealthApi

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", HealthApi.as_view(), name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("users.urls")),
    path("api/", include("fitting.urls")),
    path("", include("fitting.pages")),
]

if getattr(settings, "SERVE_MEDIA", False):
    # The embedded default serves media from the app itself; production uses the storage backend.
    prefix = settings.MEDIA_URL.lstrip("/")

    def serve_media(request, path):
        return serve(request, path, document_root=settings.MEDIA_ROOT)

    urlpatterns += [re_path(rf"^{prefix}(?P<path>.*)$", serve_media)]
