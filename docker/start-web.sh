#!/bin/sh
# Start the web process: migrate (DRAWBENCH_MIGRATE=0 to skip), then gunicorn in the foreground.
# The web image's command; CI runs it too (.ci/run). Settings come from the environment (.env.production.example).
#   DRAWBENCH_BIND      address:port to listen on (0.0.0.0:8000)
#   GUNICORN_WORKERS    processes (2 per CPU core plus 1 is gunicorn's rule; default 4)
#   GUNICORN_THREADS    threads per process (default 4: raters mostly wait on the database)
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

if [ "${DRAWBENCH_MIGRATE:-1}" = 1 ]; then
  "$PYTHON" manage.py migrate --noinput
fi
exec "$PYTHON" -m gunicorn drawbench.wsgi:application \
  --bind "${DRAWBENCH_BIND:-0.0.0.0:8000}" \
  --workers "${GUNICORN_WORKERS:-4}" \
  --threads "${GUNICORN_THREADS:-4}" \
  --timeout "${GUNICORN_TIMEOUT:-60}" \
  --access-logfile - \
  --error-logfile -
