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
def _fresh_token_lookups() -> None:
    """The rater token authentication remembers recent lookups per process; each test starts without them."""
    from drawbench.studies import authentication

    authentication._TOKENS.clear()
