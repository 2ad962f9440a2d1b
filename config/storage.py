"""The media storage on an S3-compatible bucket (MEDIA_STORAGE=s3), checked at start.

django-storages' S3Storage does the work. The bucket stays private: objects get no ACL of
their own (the bucket's default, private), and ``url()`` returns a pre-signed GET URL valid
for ``expiry`` seconds, so a client loads an image straight from the store and the app never
proxies image bytes. Reading an object spools it in memory (``max_memory_size`` 0: no
rollover to a temporary file), so nothing of the media is written to local disk.

Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY together, or neither (then boto3's
own chain: an instance or task role, AWS_SESSION_TOKEN, a profile).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from config.env import config_error, env, required

# S3's bucket naming rules (lowercase letters, digits, dots and hyphens; 3 to 63 characters).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# A SigV4 pre-signed URL is valid for at most seven days.
MAX_EXPIRY = 7 * 24 * 3600


def s3_storage(*, expiry: int) -> dict:
    """The ``STORAGES["default"]`` entry for the bucket the environment names."""
    bucket = required("AWS_STORAGE_BUCKET_NAME")
    if not BUCKET_NAME.fullmatch(bucket):
        config_error(f"AWS_STORAGE_BUCKET_NAME is not a valid bucket name: {bucket!r}")
    endpoint = env.str("AWS_S3_ENDPOINT_URL", default="")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            config_error(f"AWS_S3_ENDPOINT_URL must be an http:// or https:// URL, not {endpoint!r}")
    access_key = env.str("AWS_ACCESS_KEY_ID", default="")
    secret_key = env.str("AWS_SECRET_ACCESS_KEY", default="")
    if bool(access_key) != bool(secret_key):
        config_error("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together (or neither, for a role)")
    if not 1 <= expiry <= MAX_EXPIRY:
        config_error(f"MEDIA_URL_EXPIRY must be between 1 and {MAX_EXPIRY} seconds, not {expiry}")
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint or None,
            "access_key": access_key or None,
            "secret_key": secret_key or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "signature_version": "s3v4",
            "querystring_auth": True,  # every URL pre-signed
            "querystring_expire": expiry,
            "default_acl": None,  # no public-read: the bucket's own (private) default
            "file_overwrite": False,  # a name already taken gets another, as on the file system
            "max_memory_size": 0,  # reads stay in memory
        },
    }
