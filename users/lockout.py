"""Login throttling with django-axes: the lock-out rules, the 429 answer, and what a
successful login clears.

axes counts failed ``authenticate()`` calls (settings: "login throttling") per username, address
and user agent, and locks a (username, address) pair by itself (``AXES_LOCKOUT_PARAMETERS``).
``LoginLockoutHandler`` adds the two wider locks. When a login is refused,
``axes.middleware.AxesMiddleware`` replaces the view's response with ``lockout_response``.
"""

from __future__ import annotations

import math

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_ip_address, get_client_username, get_cool_off
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db.models import Sum
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


class LoginLockoutHandler(AxesDatabaseHandler):
    """AXES_HANDLER: axes' database handler, plus a lock of an address and one of a username.

    Three rules, each over the failures axes still holds (a failure is forgotten
    LOGIN_COOLOFF_MINUTES after the last one of its username, address and user agent):

    - a username from one address: ``LOGIN_FAILURE_LIMIT`` failures (axes' own rule);
    - an address for every username: failures on ``LOGIN_ADDRESS_USERNAME_LIMIT`` different
      usernames (someone trying names; one mistyped password behind a shared NAT is not);
    - a username from every address: ``LOGIN_USERNAME_FAILURE_LIMIT`` failures, each address
      counting at most ``LOGIN_FAILURE_LIMIT`` (a guessing spread over many addresses; one
      address hammering away only locks itself out of that username).

    None of them looks at whether the username exists.
    """

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        return super().is_locked(request, credentials) or self._wider_lock(request, credentials)

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        super().user_login_failed(sender, credentials, request=request, **kwargs)
        # The failure that reaches a wider limit is refused itself, as axes does for its own rule.
        if request is None or request.axes_locked_out or self.is_whitelisted(request, credentials):
            return
        if self._wider_lock(request, credentials):
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send(
                "axes",
                request=request,
                username=get_client_username(request, credentials),
                ip_address=request.axes_ip_address,
            )

    def _wider_lock(self, request, credentials: dict | None) -> bool:
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        from_address = recent.filter(ip_address=request.axes_ip_address)
        if from_address.values("username").distinct().count() >= settings.LOGIN_ADDRESS_USERNAME_LIMIT:
            return True
        username = get_client_username(request, credentials)
        failures_per_address = (
            recent.filter(username=username)
            .order_by()
            .values("ip_address")
            .annotate(failures=Sum("failures_since_start"))
            .values_list("failures", flat=True)
        )
        capped = sum(min(failures, settings.AXES_FAILURE_LIMIT) for failures in failures_per_address)
        return capped >= settings.LOGIN_USERNAME_FAILURE_LIMIT


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
