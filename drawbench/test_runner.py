"""`python manage.py test [labels or paths]` runs the pytest suite (settings.TEST_RUNNER), as pytest-django documents:
https://pytest-django.readthedocs.io/en/latest/faq.html#how-can-i-use-manage-py-test-with-pytest-django

Django's own runner finds none of the pytest-style tests and reports "Ran 0 tests … OK". Here pytest runs them, in a
child process: manage.py has already configured Django with its own settings module, and the suite needs the test
settings that pyproject.toml names. A run that collects nothing fails (pytest's exit status 5), as any failure does.
"""

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def label_to_pytest(label: str, *, root: Path = BASE_DIR) -> str:
    """A path stays as it is; a dotted Django label becomes a path, with `::` before a class or test name
    (tests.test_project.test_x -> tests/test_project.py::test_x)."""
    if "/" in label or label.endswith(".py") or (root / label).exists() or "." not in label:
        return label
    parts = label.split(".")
    for i in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:i])
        if base.with_suffix(".py").is_file():
            return "::".join([str(base.with_suffix(".py").relative_to(root)), *parts[i:]])
        if base.is_dir() and i == len(parts):
            return str(base.relative_to(root))
    return label


class PytestTestRunner:
    """Takes manage.py test's options (verbosity, --failfast, --keepdb) and hands the labels to pytest."""

    def __init__(self, verbosity: int = 1, failfast: bool = False, keepdb: bool = False, **kwargs) -> None:
        self.verbosity = verbosity
        self.failfast = failfast
        self.keepdb = keepdb

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument(
            "--keepdb", action="store_true", help="Keep the test database between runs (pytest --reuse-db)."
        )

    def pytest_args(self, test_labels) -> list[str]:
        argv = []
        if self.verbosity == 0:
            argv.append("--quiet")
        elif self.verbosity >= 2:
            argv.append("-" + "v" * (self.verbosity - 1))
        if self.failfast:
            argv.append("--exitfirst")
        if self.keepdb:
            argv.append("--reuse-db")
        return argv + [label_to_pytest(label) for label in test_labels]

    def run_tests(self, test_labels, **kwargs) -> int:
        """pytest's exit status: 0 when everything passed, non-zero (and so manage.py's exit status 1) otherwise."""
        env = dict(os.environ)
        # The suite's settings module is pyproject.toml's, not the one manage.py set for itself.
        env.pop("DJANGO_SETTINGS_MODULE", None)
        return subprocess.call([sys.executable, "-m", "pytest", *self.pytest_args(test_labels)], cwd=BASE_DIR, env=env)
