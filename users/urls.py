from django.urls import path

from users.apis import MeApi, PhotoDetailApi, PhotoListCreateApi, TokenApi

urlpatterns = [
    path("auth/token", TokenApi.as_view(), name="auth-token"),
    path("users/me/photos", PhotoListCreateApi.as_view(), name="photos"),
    path("users/me", MeApi.as_view(), name="me"),
    path("users/me/photos/<int:photo_id>", PhotoDetailApi.as_view(), name="photo-detail"),
]
