"""The command line: `manage.py test` runs the pytest suite, and manage.py starts without the heavy libraries."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from drawbench.test_runner import PytestTestRunner, label_to_pytest

ROOT = Path(__file__).resolve().parent.parent
# Libraries that take a second or more to import between them; the web process's URL checks must not need them.
HEAVY = ("torch", "diffusers", "matplotlib", "scipy", "pandas", "statsmodels")


def _manage(*args: str) -> subprocess.CompletedProcess:
    # On PostgreSQL, a test database of its own: with this session's name, the nested run would drop and re-create
    # the database this session's own tests run in (and fail where one of them still holds a connection to it).
    # SQLite's test database is in memory, one per process.
    env = dict(os.environ)
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        env["TEST_DB_NAME"] = f"test_cli_{os.getpid()}"
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_manage_py_test_runs_the_pytest_suite_and_reports_pytests_summary():
    result = _manage("test", "tests/test_project.py")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"=+ [1-9][0-9]* passed.* in [0-9.]+s.* =+", summary), summary
    assert "failed" not in summary and "error" not in summary
    assert "Ran 0 tests" not in result.stdout + result.stderr


@pytest.mark.slow
def test_manage_py_test_fails_when_it_finds_no_tests():
    result = _manage("test", "tests/__init__.py")
    assert result.returncode != 0
    assert "no tests ran" in result.stdout


def test_django_labels_become_pytest_paths_and_options_become_pytest_options():
    assert label_to_pytest("tests.test_project") == "tests/test_project.py"
    assert label_to_pytest("tests.studies") == "tests/studies"
    assert label_to_pytest("tests.test_cli.test_x") == "tests/test_cli.py::test_x"
    assert label_to_pytest("tests/test_cli.py::test_x") == "tests/test_cli.py::test_x"
    runner = PytestTestRunner(verbosity=2, failfast=True, keepdb=True)
    assert runner.pytest_args(["tests.test_cli"]) == ["-v", "--exitfirst", "--reuse-db", "tests/test_cli.py"]
    assert PytestTestRunner(verbosity=0).pytest_args([]) == ["--quiet"]


def test_url_checks_import_none_of_the_heavy_libraries():
    code = (
        "import json, os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'drawbench.settings.test'\n"
        "import django; django.setup()\n"
        "from django.urls import get_resolver; get_resolver().url_patterns\n"
        "from django.core.management import call_command; call_command('check')\n"
        f"print(json.dumps([name for name in {list(HEAVY)!r} if name in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(loaded) == 0, f"manage.py's checks import {loaded}: load them inside the views (drawbench.lazy_views)"


def test_a_lazy_view_imports_its_module_only_when_used():
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'drawbench.settings.test'\n"
        "import django; django.setup()\n"
        "from django.urls import get_resolver, reverse, resolve\n"
        "reverse('results:power'); match = resolve('/dashboard/power/')\n"
        "before = 'drawbench.results.views' in sys.modules\n"
        "hasattr(match.func, 'csrf_exempt')\n"
        "print(before, 'drawbench.results.views' in sys.modules, 'scipy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "True"]
