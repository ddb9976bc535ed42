"""Settings, driven by environment variables (django-environ). Every switch is an environment variable.

Defaults are the embedded mode: SQLite and a file-system Celery broker under VAR_DIR, so one machine runs the
whole loop with nothing to install. Production sets DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis).
"""

import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
SHARED_DIR = BASE_DIR.parent / "shared"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("DRAWBENCH_VAR_DIR", default=str(BASE_DIR / "var")))

# Production mode (DRAWBENCH_PRODUCTION=1, set by the Docker images and .env.production.example): DEBUG off, a real
# secret key, and the secure defaults below (HTTPS redirect, HSTS, secure cookies) unless DRAWBENCH_HTTPS=0.
DRAWBENCH_PRODUCTION = env.bool("DRAWBENCH_PRODUCTION", default=False)
DEV_SECRET_KEY = "insecure-dev-key-change-me-in-production-0123456789"
SECRET_KEY = env("DJANGO_SECRET_KEY", default=DEV_SECRET_KEY)
DEBUG = env.bool("DJANGO_DEBUG", default=not DRAWBENCH_PRODUCTION)
ERROR_DEBUG_IN_PRODUCTION = "DJANGO_DEBUG=1 with DRAWBENCH_PRODUCTION=1: debug pages show settings and code to anyone."
ERROR_DEV_SECRET_KEY = (
    "DJANGO_SECRET_KEY is unset or the development key with DEBUG off: set a long random one, e.g. from "
    "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` (see .env.production.example)."
)
ERROR_WEAK_SECRET_KEY = "DJANGO_SECRET_KEY is too weak for production: at least 50 characters, 5 of them distinct."
if DRAWBENCH_PRODUCTION and DEBUG:
    raise ImproperlyConfigured(ERROR_DEBUG_IN_PRODUCTION)
if DRAWBENCH_PRODUCTION and SECRET_KEY in ("", DEV_SECRET_KEY):
    raise ImproperlyConfigured(ERROR_DEV_SECRET_KEY)
# The same test as `check --deploy` (security.W009), made fatal in production mode.
_weak_key = len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-")
if DRAWBENCH_PRODUCTION and _weak_key:
    raise ImproperlyConfigured(ERROR_WEAK_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    # Outside production mode (a benchmark, a trial with DEBUG off) the development key is allowed, but not silently;
    # `check --deploy` fails on it (drawbench.dashboard.checks).
    warnings.warn(ERROR_DEV_SECRET_KEY, RuntimeWarning, stacklevel=1)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI's own files, served as static files: /api/docs/ works offline and under the CSP.
    "drf_spectacular_sidecar",
    "drawbench.catalog",
    "drawbench.generation",
    "drawbench.studies",
    "drawbench.results",
    "drawbench.dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the process itself, compressed and cached forever by their hashed names: no web server to
    # configure. https://whitenoise.readthedocs.io/en/stable/django.html
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "drawbench.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "drawbench.urls"

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

WSGI_APPLICATION = "drawbench.wsgi.application"
# `manage.py test` hands over to pytest, which runs the suite (drawbench.test_runner).
TEST_RUNNER = "drawbench.test_runner.PytestTestRunner"

# https://django-environ.readthedocs.io/en/latest/types.html#environ-env-db-url
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'drawbench.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo's database serves concurrent raters, the web process and the embedded worker. WAL lets readers go on
    # while one writer writes; IMMEDIATE transactions take the write lock when they begin, so a writer waits (up to
    # the timeout, in seconds) instead of failing with "database is locked" when a read-then-write transaction
    # cannot upgrade its lock. https://docs.djangoproject.com/en/5.2/ref/databases/#database-is-locked-errors
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=env.int("DRAWBENCH_SQLITE_TIMEOUT_S", default=30),
        transaction_mode="IMMEDIATE",
        # synchronous stays FULL (SQLite's default): an answer that was acknowledged survives a power cut too.
        init_command="PRAGMA journal_mode=WAL",
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters travel apart from the SQL (psycopg 3 server-side binding), so psycopg prepares a statement a
    # connection has run prepare_threshold times: PostgreSQL then skips parsing and planning it. The rater answer
    # path runs the same few statements on every request (bench/rater_load.py measures the difference). Turn it off
    # (DRAWBENCH_DB_SERVER_SIDE_BINDING=false) behind a pooler in transaction mode (PgBouncer without
    # max_prepared_statements), which cannot keep a connection's prepared statements.
    if env.bool("DRAWBENCH_DB_SERVER_SIDE_BINDING", default=True):
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=env.int("DRAWBENCH_DB_PREPARE_THRESHOLD", default=5)
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The Docker image collects static files at build time, outside VAR_DIR (which may be a mounted volume).
STATIC_ROOT = Path(env("DRAWBENCH_STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env("DRAWBENCH_MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Images live in Django storage: local files by default; S3-compatible storage (AWS, MinIO, R2...) through
# django-storages with DRAWBENCH_STORAGE_BACKEND=s3 (see README; the S3 backend also needs boto3, which is imported
# only when a file is first read or written). Any other value is a storage class's dotted path.
# https://django-storages.readthedocs.io/en/latest/backends/amazon-S3.html
DRAWBENCH_STORAGE_BACKEND = env("DRAWBENCH_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage")
STORAGES = {
    "default": {"BACKEND": DRAWBENCH_STORAGE_BACKEND},
    # In production mode collectstatic writes compressed copies under content-hashed names that whitenoise serves with
    # far-future caching (docker/install.sh runs it; the Docker image when it is built). Elsewhere whitenoise serves the
    # apps' static folders as they are, with no collectstatic to run (WHITENOISE_USE_FINDERS).
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if DRAWBENCH_PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not DRAWBENCH_PRODUCTION
if DRAWBENCH_STORAGE_BACKEND in ("s3", "storages.backends.s3.S3Storage"):
    # Credentials come from boto3's own sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, a role).
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("DRAWBENCH_S3_BUCKET", default=None),
            "endpoint_url": env("DRAWBENCH_S3_ENDPOINT_URL", default=None),
            "region_name": env("DRAWBENCH_S3_REGION", default=None),
            "location": env("DRAWBENCH_S3_PREFIX", default=""),
            "custom_domain": env("DRAWBENCH_S3_CUSTOM_DOMAIN", default=None),
            # "path" for MinIO and other servers reached by a host name without buckets as subdomains.
            "addressing_style": env("DRAWBENCH_S3_ADDRESSING_STYLE", default=None),
            # Private buckets by default: image URLs are pre-signed and expire.
            "querystring_auth": env.bool("DRAWBENCH_S3_SIGNED_URLS", default=True),
            "querystring_expire": env.int("DRAWBENCH_S3_URL_EXPIRE_S", default=3600),
        },
    }

LOGIN_URL = "admin:login"

# --- security -----------------------------------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/#secure-content-type-nosniff and neighbours;
# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/. Development serves plain http. Production mode
# (DRAWBENCH_PRODUCTION=1) is served over HTTPS (DRAWBENCH_HTTPS, default on): http redirects to https, browsers are
# told to keep to https (HSTS) and cookies travel only over https. Each DJANGO_SECURE_* variable overrides its part.
DRAWBENCH_HTTPS = env.bool("DRAWBENCH_HTTPS", default=DRAWBENCH_PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=DRAWBENCH_HTTPS)
# Load balancers and the container's health check ask for these over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
# One year once HTTPS works (browsers then refuse plain http for the domain for that long); start lower to try it out.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if DRAWBENCH_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=DRAWBENCH_HTTPS)
# The preload flag only consents to a listing in browsers' built-in HSTS lists (https://hstspreload.org); nothing is
# listed until the domain's owner submits it there.
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=DRAWBENCH_HTTPS)
# Behind a TLS-terminating proxy (Caddy, nginx, a load balancer) that sets X-Forwarded-Proto; only then, since a
# client could send the header itself.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_BEHIND_TLS_PROXY", False) else None
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=DRAWBENCH_HTTPS)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
# Every page without its own policy gets this one (drawbench.csp; {nonce} is a fresh nonce per response, {img_src}
# DRAWBENCH_CSP_IMG_SRC): scripts and styles only with the response's nonce, images from this site and data: URLs
# (charts), requests to this site. Rater pages set a stricter one of their own.
DRAWBENCH_CSP = env(
    "DRAWBENCH_CSP",
    default=(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
        # Style attributes (progress bars' widths) cannot run code; scripts and <style> elements need the nonce.
        "style-src-attr 'unsafe-inline'; img-src 'self' data:{img_src}; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
)
# Rater pages send a Content-Security-Policy (studies.views.rater_csp); images from elsewhere than this site (an
# S3 bucket, a CDN) need their origin here, e.g. DRAWBENCH_CSP_IMG_SRC=https://bucket.s3.amazonaws.com
DRAWBENCH_CSP_IMG_SRC = env.list("DRAWBENCH_CSP_IMG_SRC", default=[])
# Request bodies past this many bytes are refused (form posts by Django, JSON by the rater API) with a 4xx that
# says so. Uploaded files are not counted here; their limits are DRAWBENCH_MAX_IMAGE_BYTES/PIXELS.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)

# Throttle counts live here: one process's memory by default; several processes need a shared cache, e.g.
# DRAWBENCH_CACHE_URL=redis://127.0.0.1:6379/1
CACHES = {"default": env.cache("DRAWBENCH_CACHE_URL", default="locmemcache://")}

# --- drawbench ---------------------------------------------------------------------------------------------
# How many items a rater is served at once (each comparison's slot taken then, under the usual lease, renewed when
# the item is shown): claiming comparisons costs more than answering one, so the answer path claims a batch when the
# rater's run out. 1 serves them one at a time; more holds slots a little longer for raters who leave.
DRAWBENCH_RATER_BATCH = env.int("DRAWBENCH_RATER_BATCH", default=12)
# Serve a rater's next batch once the response showing the last item of the current one has been sent, rather than
# when that item is answered (the rater would wait for the claim). Only with batches of more than one item.
DRAWBENCH_RATER_PREFETCH = env.bool("DRAWBENCH_RATER_PREFETCH", default=True)
# A rater's first batch has a size drawn between 1 and DRAWBENCH_RATER_BATCH, so that raters who arrive together (a
# crowd launch) and work at one pace do not all run out of items, and claim their next batches, at the same moment.
DRAWBENCH_RATER_STAGGER = env.bool("DRAWBENCH_RATER_STAGGER", default=True)
# A rater's first item holds no slot until it is answered (studies.services.serving._first_item): visitors who open
# the study and leave hold nothing that honest raters need.
DRAWBENCH_RATER_FIRST_ITEM_PROVISIONAL = env.bool("DRAWBENCH_RATER_FIRST_ITEM_PROVISIONAL", default=True)
# Benchmark prompt files are read by path, never copied into the project.
DRAWBENCH_CSV = env("DRAWBENCH_CSV", default=str(SHARED_DIR / "drawbench" / "drawbench.csv"))
DRAWBENCH_CATEGORIES_CSV = env("DRAWBENCH_CATEGORIES_CSV", default=str(SHARED_DIR / "drawbench" / "categories.csv"))
PARTIPROMPTS_TSV = env("PARTIPROMPTS_TSV", default=str(SHARED_DIR / "partiprompts" / "PartiPrompts.tsv"))
DRAWBENCH_CACHE_DIR = Path(env("DRAWBENCH_CACHE_DIR", default=str(VAR_DIR / "cache")))
# Limits on images that enter the platform (imports and generated samples).
DRAWBENCH_MAX_IMAGE_BYTES = env.int("DRAWBENCH_MAX_IMAGE_BYTES", default=20 * 1024 * 1024)
DRAWBENCH_MAX_IMAGE_PIXELS = env.int("DRAWBENCH_MAX_IMAGE_PIXELS", default=4096 * 4096)
# bench/rater_load.py only: serve the ceiling endpoint (two judgment rows in one SQL statement). Never in production.
DRAWBENCH_BENCH_CEILING = env.bool("DRAWBENCH_BENCH_CEILING", default=False)

# --- Celery ------------------------------------------------------------------------------------------------
# Embedded default: kombu's file-system transport, so `manage.py demo` runs a real worker with no broker to
# install. Production: CELERY_BROKER_URL=redis://host:6379/0.
# https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.filesystem.html
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # With acks_late, a message stays "unacked" in Redis while its task runs. If the worker dies, Redis hands the
    # message to another worker once it has been unacked for visibility_timeout seconds; a task still running then is
    # delivered twice (harmless: sample writes are idempotent), so keep it above the longest batch. Workers sweep for
    # such messages every DRAWBENCH_BROKER_RESTORE_INTERVAL seconds. Tests set both to a few seconds.
    # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("DRAWBENCH_BROKER_VISIBILITY_TIMEOUT", default=3600),
        "unacked_restore_interval": env.int("DRAWBENCH_BROKER_RESTORE_INTERVAL", default=60),
        "unacked_restore_throttle": 1,
    }
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery-queue"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        # Exchange tables; kombu's default is "control" relative to the current directory.
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
    _queue_dir.mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
# A killed worker loses nothing: the message is acknowledged only after the task ends, one at a time.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Generation tasks go to the queue their backend asks for (SampleBackend.queue(): "gpu" for a model on an
# accelerator, "cpu" otherwise), chosen per task when it is queued. Workers subscribe with -Q: one solo worker per
# GPU on the gpu queue, any number on the cpu queue; the embedded worker takes both. The names are environment
# variables so that several deployments (or test runs) can share one Redis.
DRAWBENCH_QUEUES = {
    "gpu": env("DRAWBENCH_GPU_QUEUE", default="gpu"),
    "cpu": env("DRAWBENCH_CPU_QUEUE", default="cpu"),
}
CELERY_TASK_ROUTES = {"drawbench.generation.tasks.*": {"queue": DRAWBENCH_QUEUES["cpu"]}}
# What a worker started without -Q consumes: every queue (the embedded mode's single worker does everything).
# Each queue has its own direct exchange and routing key, as Celery makes a queue it is not told about.
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name), routing_key=name) for name in dict.fromkeys(["celery", *DRAWBENCH_QUEUES.values()])
]

# --- REST framework ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # Answers per rater (a person looking at 16 images does not answer more than about once a second) and new
    # raters per client address (studies.throttling).
    "DEFAULT_THROTTLE_RATES": {
        "rater_submit": env("DRAWBENCH_RATER_SUBMIT_RATE", default="60/min"),
        "rater_start": env("DRAWBENCH_RATER_START_RATE", default="30/min"),
    },
    # Throttles key on REMOTE_ADDR; behind N reverse proxies, the address the nearest of them appended to
    # X-Forwarded-For (https://www.django-rest-framework.org/api-guide/throttling/#how-clients-are-identified).
    "NUM_PROXIES": env.int("DRAWBENCH_TRUSTED_PROXIES", default=0),
    # JSON bodies: too deep, duplicate keys, NaN or out-of-range numbers are a 400 (studies.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "drawbench.studies.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "drawbench API",
    "DESCRIPTION": "Studies, results and exports of DrawBench-style human evaluations.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # https://drf-spectacular.readthedocs.io/en/latest/settings.html (drf-spectacular-sidecar)
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The 400/401/403/404/429 responses that views do not declare (drawbench.api_schema); enums as by default.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "drawbench.api_schema.error_responses_hook",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("DRAWBENCH_LOG_LEVEL", default="WARNING")},
}

VAR_DIR.mkdir(parents=True, exist_ok=True)
# whitenoise serves from here (collectstatic fills it); it warns at start when the folder is missing.
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
