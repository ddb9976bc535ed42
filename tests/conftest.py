"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE=1 is set by the test settings."""

import os
from pathlib import Path

import pytest

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave things for people to look at (screenshots, plots); ignored by git."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(username="researcher", password="pw-researcher", is_staff=True)


@pytest.fixture(autouse=True)
def _no_hub() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> None:
    """What outlives a test in this process, each test starts without: the rater token authentication's recent
    lookups, the studies' display names (drawbench.studies.sql), and Django's cache, where the throttles count (a
    live server runs in this process: raters that earlier tests started from 127.0.0.1 would count against it)."""
    from django.core.cache import cache

    from drawbench.studies import authentication, sql

    authentication._TOKENS.clear()
    sql._DISPLAY_NAMES.clear()
    cache.clear()
