from django.urls import path

from users.apis import PhotoListCreateApi, TokenApi

urlpatterns = [
    path("auth/token", TokenApi.as_view(), name="auth-token"),
    path("users/me/photos", PhotoListCreateApi.as_view(), name="photos"),
]
