"""API tokens move from DRF's authtoken (keys in clear, no lifetime) to knox (digests, expiry).

Every existing DRF token keeps working: its key is stored as a knox token (the SHA-512 digest
of the same key, and its first 15 characters to look it up by), valid API_TOKEN_TTL from this
migration. Then the old table, which holds the keys in clear, is dropped, with the records of
its migrations (the app is no longer installed; were it installed again, it would start empty).
A database that never had the table (a new install) has nothing to move.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS

LEGACY_TABLE = "authtoken_token"


def move_drf_tokens_to_knox(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    quote = schema_editor.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote('key')}, {quote('user_id')} FROM {quote(LEGACY_TABLE)}")
        rows = cursor.fetchall()
    expiry = timezone.now() + settings.API_TOKEN_TTL
    AuthToken.objects.bulk_create(
        AuthToken(digest=hash_token(key), token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id, expiry=expiry)
        for key, user_id in rows
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {quote(LEGACY_TABLE)}")
        cursor.execute(f"DELETE FROM {quote('django_migrations')} WHERE {quote('app')} = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_verbose_names"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    # Keys cannot be recovered from digests: going back leaves the knox tokens as they are.
    operations = [migrations.RunPython(move_drf_tokens_to_knox, migrations.RunPython.noop, elidable=True)]
