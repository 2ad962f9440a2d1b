from django.db import migrations

NAME = "fitting-retention"


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={"func": "fitting.tasks.purge_expired", "schedule_type": "H", "repeats": -1},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("fitting", "0002_sweep_schedule")]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
