"""The demo page (session login) and its login/logout views."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import path
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.generic import TemplateView

demo_page = login_required(ensure_csrf_cookie(TemplateView.as_view(template_name="demo.html")), login_url="/login/")

urlpatterns = [
    path("", demo_page, name="demo"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", redirect_authenticated_user=True, next_page="/"
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
]
