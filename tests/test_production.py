"""Production settings (DRAWBENCH_PRODUCTION=1), as the Docker images and .env.production.example set them:
`check --deploy` is clean, the development key and DEBUG are refused, static files are served by the app itself with
long caching, nothing serves MEDIA_ROOT, and the web process never imports torch.

Each case starts a fresh Python process, since settings are read once at start.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from drawbench.settings.base import DEV_SECRET_KEY, ERROR_DEBUG_IN_PRODUCTION, ERROR_DEV_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.production.example"


def example_env() -> dict[str, str]:
    """The documented production .env, with its CHANGE-ME values filled in as an operator would."""
    values = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = secrets.token_urlsafe(50) if value.strip() == "CHANGE-ME" else value.strip()
    return values


def run_django(tmp_path, code_or_args, *, env: dict[str, str], python: bool = False) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DRAWBENCH_", "DATABASE_URL"))}
    clean.update(DRAWBENCH_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="drawbench.settings.base", **env)
    command = [sys.executable, "-c", code_or_args] if python else [sys.executable, "manage.py", *code_or_args]
    return subprocess.run(command, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_the_documented_production_env(tmp_path):
    result = run_django(tmp_path, ["check", "--deploy", "--fail-level", "DEBUG"], env=example_env())

    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_the_example_env_sets_every_secure_setting():
    env = example_env()
    for name in (
        "DRAWBENCH_PRODUCTION", "DJANGO_DEBUG", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS",
        "DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_HSTS_SECONDS", "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "DJANGO_SECURE_COOKIES",
    ):  # fmt: skip
        assert name in env, name
    assert env["DJANGO_DEBUG"] == "0" and env["DRAWBENCH_PRODUCTION"] == "1"
    assert "CHANGE-ME" in EXAMPLE.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "secret_key",
    [None, DEV_SECRET_KEY, ""],
    ids=["unset", "the development key", "empty"],
)
def test_production_refuses_to_start_with_the_development_key(tmp_path, secret_key):
    env = example_env()
    if secret_key is None:
        env.pop("DJANGO_SECRET_KEY")
    else:
        env["DJANGO_SECRET_KEY"] = secret_key

    result = run_django(tmp_path, ["check"], env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and ERROR_DEV_SECRET_KEY in result.stderr


@pytest.mark.parametrize("secret_key", ["short-but-random-Qx81", "a" * 60, "django-insecure-" + "x7Yq" * 12])
def test_production_refuses_a_weak_secret_key(tmp_path, secret_key):
    result = run_django(tmp_path, ["check"], env=example_env() | {"DJANGO_SECRET_KEY": secret_key})

    assert result.returncode != 0 and "DJANGO_SECRET_KEY is too weak" in result.stderr


def test_production_refuses_debug(tmp_path):
    result = run_django(tmp_path, ["check"], env=example_env() | {"DJANGO_DEBUG": "1"})

    assert result.returncode != 0 and ERROR_DEBUG_IN_PRODUCTION in result.stderr


def test_debug_off_outside_production_mode_warns_and_check_deploy_fails_on_the_development_key(tmp_path):
    result = run_django(tmp_path, ["check", "--deploy"], env={"DJANGO_DEBUG": "0"})

    assert result.returncode != 0
    assert "drawbench.E001" in result.stderr and "RuntimeWarning" in result.stderr


def test_development_defaults_are_unchanged(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
        "s.SECRET_KEY == s.DEV_SECRET_KEY)"
    )
    result = run_django(tmp_path, code, env={}, python=True)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "0", "False", "True"]


PRODUCTION_PROBE = """
import sys
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.urls import Resolver404, resolve
from django.contrib.staticfiles.storage import staticfiles_storage

call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)
client = Client(HTTP_X_FORWARDED_PROTO="https")
static = client.get(staticfiles_storage.url("admin/css/base.css"))
login = client.get("/admin/login/")
plain = Client().get("/admin/login/")
try:
    resolve("/media/samples/ab/abc.png")
    media = "routed"
except Resolver404:
    media = "not routed"
print("static", static.status_code, static["Content-Type"], static.get("Cache-Control"))
print("login", login.status_code, login["Strict-Transport-Security"], "Content-Security-Policy" in login)
print("plain-http", plain.status_code, plain.get("Location"))
print("media", media)
print("torch", "torch" in sys.modules)
"""


@pytest.mark.slow
def test_production_serves_static_files_itself_not_media_and_never_imports_torch(tmp_path):
    env = example_env() | {
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "DJANGO_BEHIND_TLS_PROXY": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DRAWBENCH_STATIC_ROOT": str(tmp_path / "static"),
    }
    result = run_django(tmp_path, PRODUCTION_PROBE, env=env, python=True)

    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    status, content_type, cache = lines["static"].split(" ", 2)
    assert status == "200" and content_type.startswith("text/css") and "max-age=315360000" in cache
    assert lines["login"] == "200 max-age=31536000; includeSubDomains; preload True"
    assert lines["plain-http"] == "301 https://testserver/admin/login/"
    assert lines["media"] == "not routed"
    assert lines["torch"] == "False"


def env_file_values(text: str) -> dict[str, str]:
    return {
        key.strip(): value.strip()
        for key, _, value in (line.partition("=") for line in text.splitlines())
        if key.strip() and not key.lstrip().startswith("#")
    }


def test_new_env_fills_every_secret_and_check_deploy_passes_with_it(tmp_path):
    made = subprocess.run(
        [ROOT / "docker" / "new-env.sh", "drawbench.example.org"], capture_output=True, text=True, check=True
    ).stdout
    again = subprocess.run(
        [ROOT / "docker" / "new-env.sh", "drawbench.example.org"], capture_output=True, text=True, check=True
    ).stdout
    values = env_file_values(made)

    assert "CHANGE-ME" not in "".join(values.values())
    assert values["DJANGO_ALLOWED_HOSTS"] == values["DRAWBENCH_DOMAIN"] == "drawbench.example.org"
    assert len(values["DJANGO_SECRET_KEY"]) >= 50
    for secret in ("DJANGO_SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert values[secret] != env_file_values(again)[secret], secret
    result = run_django(tmp_path, ["check", "--deploy", "--fail-level", "DEBUG"], env=values)
    assert result.returncode == 0, result.stderr + result.stdout


def test_new_env_for_localhost_sends_no_hsts():
    made = subprocess.run(
        [ROOT / "docker" / "new-env.sh", "localhost"], capture_output=True, text=True, check=True
    ).stdout
    values = env_file_values(made)

    assert values["DJANGO_SECURE_HSTS_SECONDS"] == "0" and values["DJANGO_SECURE_HSTS_PRELOAD"] == "0"
    assert values["DJANGO_ALLOWED_HOSTS"] == "localhost"
