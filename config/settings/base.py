"""Settings shared by every environment. Every variable: docs/operations.md ("Settings reference")."""

import sys
from datetime import timedelta
from urllib.parse import urlsplit

from csp import constants as csp
from django.utils.dateparse import parse_duration

from config.env import BASE_DIR, config_error, env, url_with_query_defaults
from config.storage import s3_storage
from fitting.engines.catalog import default_prices as default_model_prices
from fitting.prompts import parse_experiment as parse_prompt_experiment

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# On API paths a CSRF failure answers in the API's JSON error shape (core/exceptions.py).
CSRF_FAILURE_VIEW = "core.exceptions.csrf_failure"

INSTALLED_APPS = [
    "config.apps.AdminConfig",  # django.contrib.admin with the project's site (config/admin.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens: stored as digests, with a lifetime (API_TOKEN_TTL)
    "config.apps.TaskQueueConfig",  # django_q, under a translated name
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",  # Content-Security-Policy (its system checks; the header comes from the middleware)
    "config.apps.LoginLockoutConfig",  # axes, under a translated name
    "core",
    "users",
    "fitting",
    "demo",  # the demo page and seed_demo
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # CONTENT_SECURITY_POLICY on every response
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A view on an API path that cannot reach the database answers 503 SERVICE_UNAVAILABLE.
    "core.exceptions.DatabaseUnavailableMiddleware",
    # Last: turns a login that axes refused into the 429 answer (users.lockout.lockout_response).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and several worker processes share one file: WAL lets readers run
    # beside the writer, IMMEDIATE takes the write lock at BEGIN (so no deadlock on lock
    # upgrade), and the busy timeout makes a writer wait instead of failing "locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": ("PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=20000;"),
    }
else:
    # A database that is down or does not answer fails a request in seconds, not minutes:
    # seconds to establish a connection, and (web) to get one from the pool.
    DATABASES["default"]["OPTIONS"] = {"connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=3)}
    if "qcluster" in sys.argv[1:2]:
        # Workers are forked single-threaded processes: one persistent connection each. (A
        # connection pool made before the fork would be shared by every worker and break.)
        DATABASES["default"]["CONN_MAX_AGE"] = None
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    else:
        # Under ASGI every request may run on a thread of its own, and a connection per thread
        # exhausts the server's max_connections under load: a bounded pool per web process.
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": env.int("DB_POOL_MAX", default=10),
            "timeout": env.float("DB_POOL_TIMEOUT", default=5),
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (Redis when REDIS_URL is set) --------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
# Seconds to connect to Redis, and to wait for any answer (above the broker's 1 s blocking pop).
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=3)
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", default=5)
REDIS_OPTIONS = {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT, "socket_timeout": REDIS_TIMEOUT}
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": REDIS_OPTIONS,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- login throttling (django-axes) --------------------------------------------------------
# Failed logins (POST /api/auth/token, /login/, /admin/login/) lock (users.lockout):
# - a username from one address at LOGIN_FAILURE_LIMIT failures;
# - an address for every username when it failed on LOGIN_ADDRESS_USERNAME_LIMIT usernames;
# - a username from every address at LOGIN_USERNAME_FAILURE_LIMIT failures, each address
#   counting at most LOGIN_FAILURE_LIMIT of them (so one address cannot lock anyone out).
# Failures count within LOGIN_COOLOFF_MINUTES of each other. The failure that reaches a limit,
# and every attempt after it (the right password too), answer 429 THROTTLED with Retry-After
# until the cool-off has passed since the last attempt. A username
# that does not exist is counted and locked exactly like one that does. Counts live in the
# database: every web process shares them, a restart keeps them, a concurrent failure is
# counted under a row lock (the cache handler reads and writes without one), and staff see
# and delete lockouts in the admin ("Access attempts"); `manage.py axes_reset` clears all.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "users.lockout.LoginLockoutHandler"  # axes' database handler and the two wider locks
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
LOGIN_ADDRESS_USERNAME_LIMIT = env.int("LOGIN_ADDRESS_USERNAME_LIMIT", default=10)
LOGIN_USERNAME_FAILURE_LIMIT = env.int("LOGIN_USERNAME_FAILURE_LIMIT", default=50)
AXES_LOCKOUT_CALLABLE = "users.lockout.lockout_response"
# A success clears that username's failures from that address only (users.lockout): axes'
# own reset would also clear the address's failures on other usernames, so a guesser with
# one account of their own could log into it between guesses and never be locked out.
AXES_RESET_ON_SUCCESS = False
# No row per successful login: personal data that would grow without bound.
AXES_DISABLE_ACCESS_LOG = True
# The client address. With no proxy (TRUSTED_PROXY_COUNT=0) it is the socket's address and a
# client's own X-Forwarded-For is ignored. Behind N reverse proxies that each append to
# X-Forwarded-For, it is the entry the outermost proxy appended (N-th from the right): what a
# client writes into the header itself stays to the left of it and is never used.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    config_error("TRUSTED_PROXY_COUNT must be 0 or more")
# uvicorn (started by config.serve) believes X-Forwarded-For/-Proto only from these addresses, and
# only when TRUSTED_PROXY_COUNT > 0: with 0 it ignores the headers whoever sends them.
FORWARDED_ALLOW_IPS = env("FORWARDED_ALLOW_IPS", default="127.0.0.1")
if TRUSTED_PROXY_COUNT:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    # ipware counts the proxies named in the header, and the last proxy is not named there.
    AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT - 1
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# Non-strict: a chain longer than expected (the client sent its own header) still yields the
# address at the trusted position, instead of falling back to the proxy's own address.
IPWARE_STRICT = False

LANGUAGE_CODE = "ko"
LANGUAGES = [("ko", "Korean"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["config.formats"]  # times to the second (config/formats)

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Where photos, garments and results live: "local" (MEDIA_ROOT, the embedded default) or "s3"
# (an S3-compatible bucket shared by every machine: config/storage.py). With s3 the bucket
# stays private and every image URL the API returns is pre-signed, valid MEDIA_URL_EXPIRY s.
MEDIA_STORAGE = env("MEDIA_STORAGE", default="local")
MEDIA_URL_EXPIRY = env.int("MEDIA_URL_EXPIRY", default=3600)
if MEDIA_STORAGE == "s3":
    STORAGES["default"] = s3_storage(expiry=MEDIA_URL_EXPIRY)
elif MEDIA_STORAGE != "local":
    config_error(f"MEDIA_STORAGE must be 'local' or 's3', not {MEDIA_STORAGE!r}")
# --- Content-Security-Policy (django-csp) ------------------------------------------------------
# Every page loads scripts, styles, images and fonts from this site only: no inline script, no
# eval, no plugin, no framing, no form posting elsewhere. A page with an inline <script> or
# <style> (the API docs' Swagger UI, two admin pages) marks it with the request's nonce
# (``nonce="{{ request.csp_nonce }}"``), which the middleware then puts in the header. style=""
# attributes (the admin's own templates and widgets) are allowed: they cannot run script.
# Images may also come from the media bucket (MEDIA_STORAGE=s3: pre-signed URLs on its endpoint)
# and from CSP_MEDIA_ORIGINS (e.g. a CDN in front of it), a comma-separated list of origins.
# (Not a setting of its own: django-csp refuses its 3.x-style CSP_* settings.)
_media_origins = env.list("CSP_MEDIA_ORIGINS", default=[])
if MEDIA_STORAGE == "s3":
    _endpoint = urlsplit(STORAGES["default"]["OPTIONS"]["endpoint_url"] or "")
    # Without an endpoint, AWS names the bucket's host after the bucket (and region).
    _media_origins.append(f"{_endpoint.scheme}://{_endpoint.netloc}" if _endpoint.netloc else "https://*.amazonaws.com")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF, csp.NONCE],
        "style-src": [csp.SELF, csp.NONCE],
        "style-src-attr": [csp.UNSAFE_INLINE],
        "img-src": [csp.SELF, "data:", *_media_origins],  # data: Swagger UI's icons
        "connect-src": [csp.SELF],  # fetch and EventSource: the API on this site
        "font-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],  # as X-Frame-Options: DENY
    }
}

# Django's own limit on a request body held in memory; our image limit is checked too.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- request limits -----------------------------------------------------------------------
# Any request body over this many bytes is refused with 413 REQUEST_TOO_LARGE before it is
# read (config/bodylimit.py): from Content-Length, or while a chunked body streams in. Above
# UPLOAD_MAX_BYTES, so an upload at the limit still gets its own IMAGE_TOO_LARGE.
REQUEST_MAX_BYTES = env.int("REQUEST_MAX_BYTES", default=20 * 1024 * 1024)

# Anonymous requests for /thumbs/ (catalogue thumbnails) per client address (DRF rate
# "N/second|minute|hour|day"; empty: no limit); one more is 429 THROTTLED with Retry-After.
# Each rendition is made once and stored beside the images (core/media.py).
THUMBNAIL_ANON_RATE = env("THUMBNAIL_ANON_RATE", default="120/minute")

# GET /healthz answers within this many seconds, each probe bounded (core/health.py).
HEALTHZ_TIMEOUT = env.float("HEALTHZ_TIMEOUT", default=3)

# --- REST API -----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",  # "Authorization: Token <key>"
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "core.exceptions.exception_handler",
    # A throttle's address for an anonymous client: as the login limits', never the client's own header.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.SafeJSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
}

# --- API tokens (django-rest-knox) -----------------------------------------------------------
# POST /api/auth/token issues a new token per login, valid API_TOKEN_TTL from then on (not
# extended by use): seconds, "DD HH:MM:SS" or ISO 8601 ("P30D"). Only a SHA-512 digest is
# stored; POST /api/auth/logout revokes the token it carries, /api/auth/logout-all every token
# of its user. A token of a user made inactive stops working at once.
API_TOKEN_TTL = parse_duration(env("API_TOKEN_TTL", default="P30D"))
if API_TOKEN_TTL is None or API_TOKEN_TTL.total_seconds() <= 0:
    config_error("API_TOKEN_TTL must be a positive duration: seconds, 'DD HH:MM:SS' or ISO 8601 such as P30D")
REST_KNOX = {
    "TOKEN_TTL": API_TOKEN_TTL,
    "AUTH_HEADER_PREFIX": "Token",  # the header clients sent before (DRF's tokens)
    "AUTO_REFRESH": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Virtual fitting API",
    "DESCRIPTION": (
        "Upload a photo, pick up to three garments, and follow the job as each garment is applied. "
        'Every error is {"error": {"code", "message", "field"}} with a stable code.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from the app: no CDN, works offline
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"ProbeStateEnum": "core.health.PROBE_STATES"},
    # The event stream is a plain async view the generator does not see: fitting/openapi.py.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "fitting.openapi.add_event_stream"],
}

# --- uploads ------------------------------------------------------------------------------
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=15 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=40_000_000)
# Photos are stored at a working size: long side at most this, never enlarged (the image
# model answers at about one megapixel, so more is only cost). The stored size is the canvas.
PHOTO_MAX_SIDE = env.int("PHOTO_MAX_SIDE", default=2048)
if not 256 <= PHOTO_MAX_SIDE <= 8192:
    config_error(f"PHOTO_MAX_SIDE must be between 256 and 8192, not {PHOTO_MAX_SIDE}")
# Large image decodes (over 4 MP) one process runs at once; more wait for a slot. Each costs
# at most ~100 MB (core/images.py: nothing is decoded at full size), so this bounds the
# memory decoding can take in one web process or worker. A HEIC is decoded in a child
# process, which may take IMAGE_DECODE_TIMEOUT seconds at most.
IMAGE_DECODE_CONCURRENCY = env.int("IMAGE_DECODE_CONCURRENCY", default=2)
if IMAGE_DECODE_CONCURRENCY < 1:
    config_error("IMAGE_DECODE_CONCURRENCY must be 1 or more")
IMAGE_DECODE_TIMEOUT = env.float("IMAGE_DECODE_TIMEOUT", default=30)
# Per user: uploads accepted per period (DRF rate, 429 THROTTLED) and photos kept (429 QUOTA_EXCEEDED).
UPLOAD_RATE = env("UPLOAD_RATE", default="60/hour")
PHOTO_QUOTA = env.int("PHOTO_QUOTA", default=200)

# --- the fitting job ----------------------------------------------------------------------
FITTING_ENGINE = env("FITTING_ENGINE", default="local")
if FITTING_ENGINE not in ("local", "gemini", "vertex-tryon"):
    config_error(f"FITTING_ENGINE must be 'local', 'gemini' or 'vertex-tryon', not {FITTING_ENGINE!r}")
GEMINI_API_KEY = env("GEMINI_API_KEY", default="") or env("GOOGLE_API_KEY", default="")
# --- Vertex AI: the same google-genai client, on Google Cloud ---------------------------------
# GOOGLE_GENAI_USE_VERTEXAI=true with GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION
# authenticates with application default credentials (a service account, the metadata
# server, GOOGLE_APPLICATION_CREDENTIALS); with neither, GEMINI_API_KEY is a Vertex AI API
# key (express mode). The engine's identity does not change: the same model and prompts.
GEMINI_USE_VERTEXAI = env.bool("GOOGLE_GENAI_USE_VERTEXAI", default=False)
GOOGLE_CLOUD_PROJECT = env("GOOGLE_CLOUD_PROJECT", default="")
GOOGLE_CLOUD_LOCATION = env("GOOGLE_CLOUD_LOCATION", default="")
GEMINI_BASE_URL = env("GEMINI_BASE_URL", default="")
GEMINI_API_VERSION = env("GEMINI_API_VERSION", default="v1beta1" if GEMINI_USE_VERTEXAI else "v1beta")
# Current models (fitting/engines/catalog.py lists the known ones with their shutdown dates;
# `manage.py check` warns before one is shut down, `manage.py check_engine` asks the provider).
GEMINI_IMAGE_MODEL = env("GEMINI_IMAGE_MODEL", default="gemini-3.1-flash-image")
GEMINI_TEXT_MODEL = env("GEMINI_TEXT_MODEL", default="gemini-3.5-flash")
# Transient failures (408, 429, 5xx, network) are retried with exponential backoff and
# jitter, never past the job's deadline.
GEMINI_RETRY_ATTEMPTS = env.int("GEMINI_RETRY_ATTEMPTS", default=5)
GEMINI_RETRY_INITIAL_DELAY = env.float("GEMINI_RETRY_INITIAL_DELAY", default=1.0)
GEMINI_RETRY_MAX_DELAY = env.float("GEMINI_RETRY_MAX_DELAY", default=8.0)
# --- Vertex AI Virtual Try-On (FITTING_ENGINE=vertex-tryon) ---------------------------------------
# Google's try-on model, one garment per call (client.models.recontext_image); Vertex AI only.
# Its message is written by GEMINI_TEXT_MODEL through the same Vertex AI client.
VERTEX_TRYON_MODEL = env("VERTEX_TRYON_MODEL", default="virtual-try-on-001")
# Denoising steps per image (more: better and slower); 0 leaves the model's default.
VERTEX_TRYON_BASE_STEPS = env.int("VERTEX_TRYON_BASE_STEPS", default=0)
if VERTEX_TRYON_BASE_STEPS < 0:
    config_error("VERTEX_TRYON_BASE_STEPS must be 0 (the model's default) or more")
# An invisible SynthID watermark in every generated image: on unless deliberately turned off.
VERTEX_TRYON_WATERMARK = env.bool("VERTEX_TRYON_WATERMARK", default=True)
VERTEX_TRYON_SAFETY_FILTER_LEVEL = env("VERTEX_TRYON_SAFETY_FILTER_LEVEL", default="BLOCK_MEDIUM_AND_ABOVE")
_SAFETY_LEVELS = ("BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE")
if VERTEX_TRYON_SAFETY_FILTER_LEVEL not in _SAFETY_LEVELS:
    config_error(f"VERTEX_TRYON_SAFETY_FILTER_LEVEL must be one of {', '.join(_SAFETY_LEVELS)}")
VERTEX_TRYON_PERSON_GENERATION = env("VERTEX_TRYON_PERSON_GENERATION", default="ALLOW_ADULT")
if VERTEX_TRYON_PERSON_GENERATION not in ("DONT_ALLOW", "ALLOW_ADULT", "ALLOW_ALL"):
    config_error("VERTEX_TRYON_PERSON_GENERATION must be DONT_ALLOW, ALLOW_ADULT or ALLOW_ALL")
if FITTING_ENGINE == "vertex-tryon" and not GEMINI_USE_VERTEXAI:
    config_error(
        "FITTING_ENGINE=vertex-tryon runs only on Vertex AI: set GOOGLE_GENAI_USE_VERTEXAI=true with "
        "GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION, or with GEMINI_API_KEY (express mode)"
    )
if FITTING_ENGINE in ("gemini", "vertex-tryon") and GEMINI_USE_VERTEXAI:
    if bool(GOOGLE_CLOUD_PROJECT) != bool(GOOGLE_CLOUD_LOCATION):
        config_error("GOOGLE_GENAI_USE_VERTEXAI=true needs both GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION")
    if not GOOGLE_CLOUD_PROJECT and not GEMINI_API_KEY:
        config_error(
            "GOOGLE_GENAI_USE_VERTEXAI=true needs GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION "
            "(application default credentials), or GEMINI_API_KEY (Vertex AI express mode)"
        )
elif FITTING_ENGINE == "gemini" and not GEMINI_API_KEY:
    config_error("FITTING_ENGINE=gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY)")
FITTING_JOB_TIMEOUT = env.int("FITTING_JOB_TIMEOUT", default=300)
# Garments one job may have (400 TOO_MANY_ITEMS above it). One per category, and a dress
# stands for a top and a bottom, so no outfit has more than four (top, bottom, outer, shoes).
FITTING_MAX_ITEMS = env.int("FITTING_MAX_ITEMS", default=3)
if not 1 <= FITTING_MAX_ITEMS <= 4:
    config_error(f"FITTING_MAX_ITEMS must be between 1 and 4, not {FITTING_MAX_ITEMS}")
FITTING_MESSAGE_TIMEOUT = env.int("FITTING_MESSAGE_TIMEOUT", default=15)
# The most candidates one job may ask for (numSamples, 1 to this; over it: 400). Each one is
# an engine call per step with Gemini (the try-on model makes them in one call).
FITTING_MAX_SAMPLES = env.int("FITTING_MAX_SAMPLES", default=4)
if not 1 <= FITTING_MAX_SAMPLES <= 4:
    config_error(f"FITTING_MAX_SAMPLES must be between 1 and 4, not {FITTING_MAX_SAMPLES}")
# A job past its deadline plus this grace is ended as `timeout` by the sweep.
FITTING_SWEEP_GRACE = env.int("FITTING_SWEEP_GRACE", default=60)
# A job still queued (never started) this long is enqueued again by the sweep.
FITTING_REQUEUE_AFTER = env.int("FITTING_REQUEUE_AFTER", default=60)
# A request repeating an earlier completed result (same photo and garment content, engine,
# model, prompt version) completes at once from the stored images.
FITTING_RESULT_CACHE = env.bool("FITTING_RESULT_CACHE", default=True)
# Whose earlier results a request may complete from: "owner" (the same user's only; a shared
# cache would tell one user that another tried the same photo) or "global".
FITTING_RESULT_CACHE_SCOPE = env("FITTING_RESULT_CACHE_SCOPE", default="owner")
if FITTING_RESULT_CACHE_SCOPE not in ("owner", "global"):
    config_error(f"FITTING_RESULT_CACHE_SCOPE must be 'owner' or 'global', not {FITTING_RESULT_CACHE_SCOPE!r}")
# A job starts from the longest prefix of its steps another job already made (same photo
# content, garments up to that step, engine, model and prompt version; whose jobs count:
# FITTING_RESULT_CACHE_SCOPE), and only the remaining steps call the engine.
FITTING_STEP_CACHE = env.bool("FITTING_STEP_CACHE", default=True)
# Megabytes of decoded catalogue images each worker process keeps (by content hash; least
# recently used first out): a garment worn in many jobs is decoded once. 0 turns it off.
FITTING_GARMENT_CACHE_MB = env.int("FITTING_GARMENT_CACHE_MB", default=32)
if FITTING_GARMENT_CACHE_MB < 0:
    config_error(f"FITTING_GARMENT_CACHE_MB must be 0 or more, not {FITTING_GARMENT_CACHE_MB}")
# Prompt variants (fitting/prompts.py): JSON {version: weight}, e.g. {"v4": 80, "v5": 20}. Each
# new Gemini job gets a version by weight, decided by its id (the same id, the same version);
# the job is pinned to it like to its model. Unset: every job gets the default version.
try:
    FITTING_PROMPT_EXPERIMENT = parse_prompt_experiment(env("FITTING_PROMPT_EXPERIMENT", default=""))
except ValueError as exc:
    config_error(str(exc))
# The quality gate (issue 22, fitting/quality/): every generative step's answer is checked
# before it is stored (changed, identity, scene, garment, not_product); a failed check sends
# the step again with a new seed, up to FITTING_QUALITY_RETRIES more calls (within the job's
# deadline, never after a cancel). When none passes, FITTING_QUALITY_POLICY "fail" fails the
# job as QUALITY_CHECK_FAILED (its daily-quota slot is given back) and "accept_best" keeps
# the best-scoring attempt, marked not passed.
FITTING_QUALITY_GATE = env("FITTING_QUALITY_GATE", default="on")
if FITTING_QUALITY_GATE not in ("on", "off"):
    config_error(f"FITTING_QUALITY_GATE must be 'on' or 'off', not {FITTING_QUALITY_GATE!r}")
# Per check, a threshold in [0, 1] over the defaults (fitting/quality/checks.py Thresholds),
# e.g. {"identity": 0.6}; 0 keeps a check recorded but never failing. The names are the
# checks' (fitting.quality.CHECKS: not imported here, it loads OpenCV).
FITTING_QUALITY_THRESHOLDS = env.json("FITTING_QUALITY_THRESHOLDS", default={})
_QUALITY_CHECKS = ("changed", "identity", "scene", "garment", "not_product")
if not isinstance(FITTING_QUALITY_THRESHOLDS, dict) or any(
    name not in _QUALITY_CHECKS or isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
    for name, value in FITTING_QUALITY_THRESHOLDS.items()
):
    config_error(
        "FITTING_QUALITY_THRESHOLDS must be a JSON object of checks "
        f"({', '.join(_QUALITY_CHECKS)}) to numbers in [0, 1], not {FITTING_QUALITY_THRESHOLDS!r}"
    )
FITTING_QUALITY_RETRIES = env.int("FITTING_QUALITY_RETRIES", default=2)
if not 0 <= FITTING_QUALITY_RETRIES <= 5:
    config_error(f"FITTING_QUALITY_RETRIES must be between 0 and 5, not {FITTING_QUALITY_RETRIES}")
FITTING_QUALITY_POLICY = env("FITTING_QUALITY_POLICY", default="fail")
if FITTING_QUALITY_POLICY not in ("fail", "accept_best"):
    config_error(f"FITTING_QUALITY_POLICY must be 'fail' or 'accept_best', not {FITTING_QUALITY_POLICY!r}")
# "gemini": after the local checks pass, GEMINI_TEXT_MODEL judges the answer (structured
# JSON, a 0-10 score); its failure never fails a step, its tokens count in the job's cost.
FITTING_QUALITY_JUDGE = env("FITTING_QUALITY_JUDGE", default="off")
if FITTING_QUALITY_JUDGE not in ("off", "gemini"):
    config_error(f"FITTING_QUALITY_JUDGE must be 'off' or 'gemini', not {FITTING_QUALITY_JUDGE!r}")
# Days after which finished jobs, their result images and unused photos are deleted (hourly).
FITTING_RETENTION_DAYS = env.int("FITTING_RETENTION_DAYS", default=30)
# Per user: fitting jobs a day (the TIME_ZONE day) that call the engine; a whole-result cache
# hit is free. Over it, 429 QUOTA_EXCEEDED with Retry-After until the next day. 0: no limit.
# Staff can set another quota for one user in the admin (the user's page, "limits").
FITTING_DAILY_QUOTA = env.int("FITTING_DAILY_QUOTA", default=100)
if FITTING_DAILY_QUOTA < 0:
    config_error("FITTING_DAILY_QUOTA must be 0 (no limit) or more")
# Prices of the engine's models, USD per million tokens (input, output), for the estimated
# cost in the admin and GET /metrics. Defaults: the model table, fitting/engines/catalog.py
# (where and when each figure was read, and which are unconfirmed). An image of about 1,120
# output tokens at $60/M ≈ $0.067 (1K); about $0.10 at 2K (photos over 1024 px).
# FITTING_PRICES (JSON, e.g. {"my-model": {"input": 1, "output": 2}}) adds or replaces models.
FITTING_PRICES = {
    **default_model_prices(),
    "local-preview-1": {"input": 0, "output": 0},  # the local engine costs nothing
    **env.json("FITTING_PRICES", default={}),
}
# GET /metrics (Prometheus text format) answers only with "Authorization: Bearer <METRICS_TOKEN>";
# unset, /metrics is 404.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Per-user rate of POST /api/virtual-fitting (DRF throttle rate: "N/second|minute|hour|day").
FITTING_START_RATE = env("FITTING_START_RATE", default="30/minute")
# The event stream: seconds between the poll backend's batched checks of every watched job
# (below), between keepalive comments while nothing changes, and the longest it stays open.
FITTING_EVENTS_POLL = env.float("FITTING_EVENTS_POLL", default=0.5)
# The web process's first garbage-collector threshold (Python's default 700): a change sent to
# thousands of event streams allocates a few objects per stream that live for one pass of the
# event loop (bench/README.md §8). 0 leaves Python's default.
WEB_GC_THRESHOLD = env.int("WEB_GC_THRESHOLD", default=50_000)
FITTING_EVENTS_HEARTBEAT = env.float("FITTING_EVENTS_HEARTBEAT", default=15)
FITTING_EVENTS_MAX_DURATION = env.float("FITTING_EVENTS_MAX_DURATION", default=FITTING_JOB_TIMEOUT + 120)
# Webhooks: private and loopback receivers are refused unless this is on (local and test
# settings turn it on); link-local (cloud metadata) and non-http(s) URLs are refused always.
FITTING_WEBHOOK_ALLOW_PRIVATE = env.bool("FITTING_WEBHOOK_ALLOW_PRIVATE", default=False)
# Seconds to connect to a receiver, and for the whole delivery (connect, send, answer).
FITTING_WEBHOOK_CONNECT_TIMEOUT = env.float("FITTING_WEBHOOK_CONNECT_TIMEOUT", default=3)
FITTING_WEBHOOK_TIMEOUT = env.float("FITTING_WEBHOOK_TIMEOUT", default=10)
# Hours a delivery is retried (network errors, 408, 429, 5xx) before it is given up as failed.
FITTING_WEBHOOK_RETRY_HOURS = env.float("FITTING_WEBHOOK_RETRY_HOURS", default=24)
# One watcher per process learns of job changes for all its streams (fitting/watcher.py):
# "redis" (pub/sub, when REDIS_URL is set), "postgres" (LISTEN/NOTIFY) or "poll" (one query
# per FITTING_EVENTS_POLL for all watched jobs); "auto" picks the first that applies.
FITTING_EVENTS_BACKEND = env("FITTING_EVENTS_BACKEND", default="auto")
if FITTING_EVENTS_BACKEND not in ("auto", "redis", "postgres", "poll"):
    config_error(f"FITTING_EVENTS_BACKEND must be auto, redis, postgres or poll, not {FITTING_EVENTS_BACKEND!r}")
# The Redis channel / PostgreSQL NOTIFY channel of the change notices.
FITTING_EVENTS_CHANNEL = env("FITTING_EVENTS_CHANNEL", default="fitting_job_changed")
# With notices: seconds between batched re-checks of every watched job (a lost notice).
FITTING_EVENTS_RECHECK = env.float("FITTING_EVENTS_RECHECK", default=30)
# Streams one user may hold open in one web process (0: no cap); one more is 429 THROTTLED.
FITTING_EVENTS_PER_USER = env.int("FITTING_EVENTS_PER_USER", default=10)
# Milliseconds a browser waits before reconnecting (the stream's `retry:` field).
FITTING_EVENTS_RETRY_MS = env.int("FITTING_EVENTS_RETRY_MS", default=3000)
# Steps spend their time waiting on the image model: I/O-bound, so more workers than cores.
FITTING_WORKERS = env.int("FITTING_WORKERS", default=8)

# --- the catalogue feed (python manage.py import_items) -------------------------------------
# Largest garment image and largest feed downloaded (bytes); past them a row is skipped, or
# the feed refused.
FITTING_IMPORT_MAX_IMAGE_BYTES = env.int("FITTING_IMPORT_MAX_IMAGE_BYTES", default=10 * 1024 * 1024)
FITTING_IMPORT_MAX_FEED_BYTES = env.int("FITTING_IMPORT_MAX_FEED_BYTES", default=20 * 1024 * 1024)
# Private and loopback addresses (a feed on the local network) are refused unless this is set;
# link-local (cloud metadata), reserved and multicast ones always are. Never in production.
FITTING_IMPORT_ALLOW_PRIVATE = env.bool("FITTING_IMPORT_ALLOW_PRIVATE", default=False)

# --- django-q2 ----------------------------------------------------------------------------
# timeout: the job's own budget plus room for the message and saving. retry must be larger
# than timeout plus the time a task may wait in a worker's local queue (queue_limit tasks
# ahead of it, each up to `timeout`), or a slow task is delivered a second time while it
# still runs. The job itself is safe to deliver twice (it is claimed with a conditional
# update), so this only avoids waste. max_attempts bounds re-delivery of a task that kills
# its worker; catch_up off so a paused cluster does not run every missed sweep at once.
Q_TIMEOUT = FITTING_JOB_TIMEOUT + FITTING_MESSAGE_TIMEOUT + 30
Q_CLUSTER = {
    "name": "fitting",
    "workers": FITTING_WORKERS,
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT * 2 + 60,
    "queue_limit": 2 * FITTING_WORKERS,
    "max_attempts": 3,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 1000,
    "poll": 0.2,
    "label": "Django Q",
}
if REDIS_URL:
    # django-q2 gives a URL to redis.from_url: the timeouts ride in its query (unless set there).
    Q_CLUSTER["redis"] = url_with_query_defaults(REDIS_URL, **REDIS_OPTIONS)
else:
    Q_CLUSTER["orm"] = "default"

# Every line carries the job_id, attempt, step and user_id it was written for, when there is
# one (core/logcontext.py): " job_id=… attempt=…" at the end of a plain line, keys of a JSON one.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    config_error(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logcontext.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s%(context)s"},
        "json": {"()": "core.logcontext.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # httpx: a line per request; pyvips: libvips' notes on each operation ("threadpool completed").
    "loggers": {"httpx": {"level": "WARNING"}, "pyvips": {"level": "WARNING"}},
}
