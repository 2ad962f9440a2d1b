"""Login throttling with django-axes: the 429 answer, and what a successful login clears.

axes counts failed ``authenticate()`` calls (settings: "login throttling"). When it refuses one,
``axes.middleware.AxesMiddleware`` replaces the view's response with ``lockout_response``.
"""

from __future__ import annotations

import math

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_ip_address, get_cool_off
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from core.errors import ErrorCode, ServiceError
from core.exceptions import error_body


class LoginThrottledError(ServiceError):
    code = ErrorCode.THROTTLED
    status = 429
    default_message = _("Too many failed login attempts. Try again later.")


def retry_after_seconds(request: HttpRequest) -> int:
    # Every attempt during a lockout is counted as a failure and starts the cool-off again
    # (axes' AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT), so the whole cool-off is left.
    return math.ceil(get_cool_off(request).total_seconds())


def lockout_response(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with Retry-After; the API's error shape, or an HTML page.

    It takes no notice of the other arguments: axes' async middleware passes them in another
    order than its sync one, and nothing here may depend on whether the user exists.
    """
    seconds = retry_after_seconds(request)
    error = LoginThrottledError()
    if request.path_info.startswith("/api/"):
        response = JsonResponse(error_body(error.code, error.message), status=error.status)
    else:
        context = {"minutes": math.ceil(seconds / 60)}
        response = render(request, "registration/locked_out.html", context, status=error.status)
    response["Retry-After"] = str(seconds)
    return response


@receiver(user_logged_in, dispatch_uid="users.lockout.forget_failures_on_login")
def forget_failures_on_login(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """A login that succeeded clears the failures of that username from that address.

    Only that pair: failures from other addresses (someone else guessing this password) and
    this address's failures on other usernames (someone guessing between logins to an
    account of their own) keep counting until they age out.
    """
    if request is None:
        return
    AxesProxyHandler.reset_attempts(username=user.get_username(), ip_address=get_client_ip_address(request))
