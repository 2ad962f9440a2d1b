from django.db import migrations

SWEEP_NAME = "fitting-sweep"


def create_sweep_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    # update_or_create by name: running the migration again never makes a second schedule.
    Schedule.objects.update_or_create(
        name=SWEEP_NAME,
        defaults={
            "func": "fitting.tasks.sweep_fittings",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def delete_sweep_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SWEEP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("fitting", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_sweep_schedule, delete_sweep_schedule)]
