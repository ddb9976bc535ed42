"""Test settings: the base settings with fast hashing, a throwaway media folder and no hub access.

The suite runs against DATABASE_URL (PostgreSQL on CI); TEST_DB_NAME lets parallel runs use separate databases.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DRAWBENCH_VAR_DIR", tempfile.mkdtemp(prefix="drawbench-test-var-"))

from drawbench.settings.base import *  # noqa: E402,F403
from drawbench.settings.base import DATABASES, env  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="drawbench-test-media-"))
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
if env("TEST_DB_NAME", default=None):
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DB_NAME")}
# Whole batches from the first one, which the tests that count a rater's items rely on; the stagger has its own tests
# (tests/studies/test_batch_prefetch.py).
DRAWBENCH_RATER_STAGGER = False
# First items that take their slot when served, as every item did before provisional first items: the tests of
# claiming and reclaiming count slots from the first item on. Provisional first items have their own tests
# (tests/studies/test_holds.py), which turn it on.
DRAWBENCH_RATER_FIRST_ITEM_PROVISIONAL = False
