#!/bin/sh
# Install drawbench for one image: `docker/install.sh web|worker [--deps-only]`.
# The Dockerfile runs it, and so does CI (.ci/run), which has no Docker engine: the same steps either way.
#   web     pyproject's web and s3 extras (gunicorn, boto3; no torch), then collectstatic
#   worker  the gen and s3 extras (torch, diffusers, transformers, boto3)
# --deps-only installs the pinned dependencies from pyproject.toml alone (the image's cached layer).
# PYTHON (default python3) and PIP_ARGS (e.g. --no-build-isolation) are taken from the environment.
set -eu
role="${1:?usage: docker/install.sh web|worker [--deps-only]}"
deps_only="${2:-}"
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

case "$role" in
  web) extras="web,s3" ;;
  worker) extras="gen,s3" ;;
  *) echo "docker/install.sh: unknown role '$role' (web or worker)" >&2; exit 2 ;;
esac

if [ "$deps_only" = "--deps-only" ]; then
  # Every requirement of the project and of the extras, read from pyproject.toml (no source tree needed yet).
  "$PYTHON" - "$extras" > /tmp/drawbench-requirements.txt <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = project["dependencies"] + [r for extra in sys.argv[1].split(",") for r in project["optional-dependencies"][extra]]
print("\n".join(r for r in wanted if not r.startswith("drawbench[")))
PY
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install ${PIP_ARGS:-} -r /tmp/drawbench-requirements.txt
  exit 0
fi

# shellcheck disable=SC2086
"$PYTHON" -m pip install ${PIP_ARGS:-} -e ".[$extras]"

if [ "$role" = web ]; then
  # Compressed, content-hashed copies under DRAWBENCH_STATIC_ROOT for whitenoise. Settings need a secret key to
  # load in production mode; this one only collects files and is thrown away.
  DRAWBENCH_PRODUCTION=1 DJANGO_DEBUG=0 \
    DJANGO_SECRET_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    "$PYTHON" manage.py collectstatic --noinput -v 0
fi
