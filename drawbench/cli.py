"""The `drawbench` console command (pyproject's [project.scripts]): manage.py, installed on the PATH."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drawbench.settings.base")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
