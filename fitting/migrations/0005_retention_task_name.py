from django.db import migrations

NAME = "fitting-retention"


def rename(apps, schema_editor, func):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).update(func=func)


class Migration(migrations.Migration):
    """The retention task has one name across task, service and command: retention_purge."""

    dependencies = [("fitting", "0004_job_keeps_history_without_photo")]

    operations = [
        migrations.RunPython(
            lambda apps, editor: rename(apps, editor, "fitting.tasks.retention_purge"),
            lambda apps, editor: rename(apps, editor, "fitting.tasks.purge_expired"),
        )
    ]
