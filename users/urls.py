from django.urls import path

from users.apis import LogoutAllApi, LogoutApi, PhotoListCreateApi, TokenApi

urlpatterns = [
    path("auth/token", TokenApi.as_view(), name="auth-token"),
    path("auth/logout", LogoutApi.as_view(), name="auth-logout"),
    path("auth/logout-all", LogoutAllApi.as_view(), name="auth-logout-all"),
    path("users/me/photos", PhotoListCreateApi.as_view(), name="photos"),
]
