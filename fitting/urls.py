from django.urls import path

from fitting.apis import FittingDetailApi, FittingListCreateApi, ItemListApi
from fitting.events import job_events

urlpatterns = [
    path("items", ItemListApi.as_view(), name="items"),
    path("virtual-fitting", FittingListCreateApi.as_view(), name="fitting-list"),
    path("virtual-fitting/<uuid:job_id>", FittingDetailApi.as_view(), name="fitting-detail"),
    path("virtual-fitting/<uuid:job_id>/events", job_events, name="fitting-events"),
]
