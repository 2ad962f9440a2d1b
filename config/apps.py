"""Third-party apps under names the staff read in their own language.

django-q2 and django-axes name their apps in plain English ("Django Q", "Axes"), and ship
no Korean catalogue. Their app configs are subclassed here for translatable names, and the
labels their admin pages show (models, columns, filters, actions) are listed below so that
``makemessages`` keeps them in this project's catalogue (``locale/ko``): Django looks a
msgid up in every catalogue, ours first.
"""

from axes.apps import AppConfig as AxesAppConfig
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop
from django_q.apps import DjangoQConfig


class AdminConfig(DjangoAdminConfig):
    """Django's admin with the project's site (config.admin.AdminSite) as ``admin.site``."""

    default_site = "config.admin.AdminSite"


class TaskQueueConfig(DjangoQConfig):
    verbose_name = _("Task queue")


class LoginLockoutConfig(AxesAppConfig):
    verbose_name = _("Login lockouts")


THIRD_PARTY_LABELS = (
    # django-q2: models, columns, filters, actions
    gettext_noop("Task"),
    gettext_noop("Tasks"),
    gettext_noop("Successful task"),
    gettext_noop("Successful tasks"),
    gettext_noop("Failed task"),
    gettext_noop("Failed tasks"),
    gettext_noop("Scheduled task"),
    gettext_noop("Scheduled tasks"),
    gettext_noop("Queued task"),
    gettext_noop("Queued tasks"),
    gettext_noop("Task id"),
    gettext_noop("Name"),
    gettext_noop("Function"),
    gettext_noop("Hook"),
    gettext_noop("Arguments"),
    gettext_noop("Keyword arguments"),
    gettext_noop("Result"),
    gettext_noop("Group"),
    gettext_noop("Cluster"),
    gettext_noop("Cluster key"),
    gettext_noop("Started at"),
    gettext_noop("Stopped at"),
    gettext_noop("Success"),
    gettext_noop("success"),
    gettext_noop("last_run"),
    gettext_noop("Attempt count"),
    gettext_noop("Schedule Type"),
    gettext_noop("Minutes"),
    gettext_noop("Repeats"),
    gettext_noop("Next Run"),
    gettext_noop("Cron"),
    gettext_noop("Last task id"),
    gettext_noop("Intended date kwarg"),
    gettext_noop("Payload"),
    gettext_noop("Lock until"),
    gettext_noop("Once"),
    gettext_noop("Hourly"),
    gettext_noop("Daily"),
    gettext_noop("Weekly"),
    gettext_noop("Biweekly"),
    gettext_noop("Monthly"),
    gettext_noop("Bimonthly"),
    gettext_noop("Quarterly"),
    gettext_noop("Yearly"),
    gettext_noop("Short result"),
    gettext_noop("Time Taken"),
    gettext_noop("Resubmit selected tasks to queue"),
    gettext_noop("n = n times, -1 = forever"),
    gettext_noop("How often this task should be enqueued."),
    gettext_noop("When this schedule runs next (stored in UTC)."),
    gettext_noop("Optional label to identify this schedule in the admin."),
    gettext_noop("Number of minutes for the Minutes type"),
    gettext_noop("Name of the target cluster"),
    gettext_noop("Name of kwarg to pass intended schedule date"),
    gettext_noop("Cron expression"),
    gettext_noop("e.g. module.tasks.function"),
    gettext_noop("e.g. module.tasks.result_function"),
    gettext_noop("e.g. 1, 2, 'John'"),
    gettext_noop("e.g. x=1, y=2, name='John'"),
    # django-axes
    gettext_noop("access attempt"),
    gettext_noop("access attempts"),
    gettext_noop("access attempt expiration"),
    gettext_noop("access attempt expirations"),
    gettext_noop("access failure"),
    gettext_noop("access failures"),
    gettext_noop("access log"),
    gettext_noop("access logs"),
    gettext_noop("Access Attempt"),
    gettext_noop("Access lock out"),
    gettext_noop("Attempt Time"),
    gettext_noop("Expires At"),
    gettext_noop("Failed Logins"),
    gettext_noop("GET Data"),
    gettext_noop("POST Data"),
    gettext_noop("HTTP Accept"),
    gettext_noop("IP Address"),
    gettext_noop("Logout Time"),
    gettext_noop("Path"),
    gettext_noop("User Agent"),
    gettext_noop("Username"),
    gettext_noop("Attempt Remaining"),
    gettext_noop("Clean up expired attempts"),
    gettext_noop("Form Data"),
    gettext_noop("Locked Out"),
    gettext_noop("Meta Data"),
    gettext_noop("Not set"),
    # Django's own Korean for these reads badly ("보기위한 1%s 를(을) 선택", "뷰 %s"): ours wins.
    gettext_noop("Select %s to view"),
    gettext_noop("Select %s to change"),
    gettext_noop("View %s"),
    gettext_noop(" By %(filter_title)s "),
)
