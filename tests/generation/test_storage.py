"""Where sample images live: local files by default, S3-compatible storage through django-storages by one env var.

The settings are read in subprocesses, as a worker or the web process reads them from its environment.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

S3_ENV = {
    "DRAWBENCH_STORAGE_BACKEND": "s3",
    "DRAWBENCH_S3_BUCKET": "drawbench-samples",
    "DRAWBENCH_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    "DRAWBENCH_S3_REGION": "eu-west-1",
    "DRAWBENCH_S3_PREFIX": "study-7",
}


def read_settings(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DRAWBENCH_S3_")}
    environment.pop("DRAWBENCH_STORAGE_BACKEND", None)
    environment.update(DJANGO_SETTINGS_MODULE="drawbench.settings.base", **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


STORAGE = "from django.conf import settings; import json, sys; print(json.dumps(settings.STORAGES['default']))"


def test_images_go_to_local_files_by_default():
    done = read_settings(STORAGE)

    assert json.loads(done.stdout) == {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def test_one_env_var_switches_images_to_s3_compatible_storage():
    done = read_settings(STORAGE, **S3_ENV)

    default = json.loads(done.stdout)
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    assert default["OPTIONS"] == {
        "bucket_name": "drawbench-samples",
        "endpoint_url": "http://127.0.0.1:9000",
        "region_name": "eu-west-1",
        "location": "study-7",
        "custom_domain": None,
        "addressing_style": None,
        "querystring_auth": True,
        "querystring_expire": 3600,
    }


def test_the_s3_setting_does_not_need_boto3_to_start_the_web_process():
    code = (
        "from django.urls import get_resolver; get_resolver().url_patterns\n"
        "import drawbench.wsgi, sys; print('boto3' in sys.modules)"
    )

    done = read_settings(code, **S3_ENV)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.skipif(importlib.util.find_spec("boto3") is not None, reason="boto3 is installed here")
def test_without_boto3_the_s3_storage_says_what_to_install():
    done = read_settings("from django.core.files.storage import default_storage; default_storage.exists('x')", **S3_ENV)

    assert done.returncode != 0 and "boto3" in done.stderr.lower()


def test_django_storages_is_installed_for_the_s3_option():
    assert importlib.util.find_spec("storages.backends.s3") is not None
