from django.urls import path

from fitting.apis import (
    AccountApi,
    FittingCancelApi,
    FittingDetailApi,
    FittingListCreateApi,
    FittingRatingApi,
    ItemListApi,
    PhotoDetailApi,
    WebhookSecretApi,
    WebhookSecretRotateApi,
)
from fitting.events import job_events

urlpatterns = [
    path("items", ItemListApi.as_view(), name="items"),
    path("virtual-fitting", FittingListCreateApi.as_view(), name="fitting-list"),
    path("virtual-fitting/<uuid:job_id>", FittingDetailApi.as_view(), name="fitting-detail"),
    path("virtual-fitting/<uuid:job_id>/cancel", FittingCancelApi.as_view(), name="fitting-cancel"),
    path("virtual-fitting/<uuid:job_id>/events", job_events, name="fitting-events"),
    path("virtual-fitting/<uuid:job_id>/rating", FittingRatingApi.as_view(), name="fitting-rating"),
    path("webhooks/secret", WebhookSecretApi.as_view(), name="webhook-secret"),
    path("webhooks/secret/rotate", WebhookSecretRotateApi.as_view(), name="webhook-secret-rotate"),
    # Erasure of a photo or of the account: here, because the jobs that used them go too.
    path("users/me", AccountApi.as_view(), name="me"),
    path("users/me/photos/<int:photo_id>", PhotoDetailApi.as_view(), name="photo-detail"),
]
