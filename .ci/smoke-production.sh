#!/usr/bin/env bash
# Serve the web image's way without Docker, and look at it as a browser would (well under a minute):
# docker/install.sh web (install, collectstatic) and docker/start-web.sh (migrate, gunicorn) with production settings
# (DRAWBENCH_PRODUCTION=1, DEBUG off, a random secret key, PostgreSQL, Redis), then .ci/smoke.py fetches the login
# page, the dashboard, a static file, a new study's rater page and its first image.
# Needs PostgreSQL at 127.0.0.1:5432 (user postgres) and Redis at 127.0.0.1:6379; uses a scratch database.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-$PWD/.venv/bin/python}"
work="$(mktemp -d)"
db=drawbench_smoke
psql_admin() { PGOPTIONS="-c client_min_messages=warning" psql -h 127.0.0.1 -U postgres -d postgres -q -v ON_ERROR_STOP=1 -c "$1"; }
psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql_admin "CREATE DATABASE $db"

export PYTHON="$PY" PIP_ARGS="--no-build-isolation -q"
export DRAWBENCH_PRODUCTION=1 DJANGO_DEBUG=0 DJANGO_BEHIND_TLS_PROXY=1 DJANGO_ALLOWED_HOSTS=127.0.0.1
DJANGO_SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')"
export DJANGO_SECRET_KEY
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export CELERY_BROKER_URL=redis://127.0.0.1:6379/13 DRAWBENCH_CACHE_URL=redis://127.0.0.1:6379/14
export DRAWBENCH_VAR_DIR="$work/var" DRAWBENCH_STATIC_ROOT="$work/static" DRAWBENCH_MEDIA_ROOT="$work/media"
export DRAWBENCH_LOG_LEVEL=ERROR DJANGO_SETTINGS_MODULE=drawbench.settings.base

docker/install.sh web
port="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DRAWBENCH_BIND="127.0.0.1:$port" GUNICORN_WORKERS=2 docker/start-web.sh >"$work/web.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT

# Data, through the commands a researcher uses, while the server migrates and starts.
"$PY" - "$work/data" <<'PY'
import sys
from pathlib import Path
from PIL import Image
root = Path(sys.argv[1])
(root).mkdir(parents=True)
(root / "prompts.csv").write_text("prompt,category\nA red cube.,Colors\nTwo blue balls.,Counting\n", encoding="utf-8")
for model, shade in (("smoke-a", 40), ("smoke-b", 200)):
    for position in (1, 2):
        for k in range(2):
            (root / model / str(position)).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 64), (shade, 60 * position, 90 * k)).save(root / model / str(position) / f"{k}.png")
PY
"$PY" - "http://127.0.0.1:$port/healthz/" "$server" <<'PY' || { cat "$work/web.log"; exit 1; }
import os, sys, time, urllib.request
url, server = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while True:
    try:
        urllib.request.urlopen(url, timeout=2)
        break
    except OSError:
        os.kill(server, 0)  # raises once the server has exited
        if time.monotonic() > deadline:
            sys.exit("smoke: the server did not answer /healthz/ within 120 s")
        time.sleep(0.3)
PY
# The researcher's commands (load_prompts, import_samples --create-model, createsuperuser), in one process.
password="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(16))')"
DJANGO_SUPERUSER_PASSWORD="$password" "$PY" - "$work/data" <<'PY'
import io, sys
import django
django.setup()
from django.core.management import call_command
data, quiet = sys.argv[1], io.StringIO()
call_command("load_prompts", "csv", "--path", f"{data}/prompts.csv", "--slug", "smoke", stdout=quiet, stderr=quiet)
for model in ("smoke-a", "smoke-b"):
    call_command(
        "import_samples", "--model", model, "--prompt-set", "smoke", "--folder", f"{data}/{model}",
        "--samples-per-prompt", "2", "--create-model", stdout=quiet,
    )
call_command("createsuperuser", "--noinput", "--username", "smoke-admin", "--email", "smoke@example.org", stdout=quiet)
PY

if ! "$PY" .ci/smoke.py "http://127.0.0.1:$port" smoke-admin "$password"; then
  echo "smoke: server log:"
  tail -n 40 "$work/web.log"
  exit 1
fi
