# syntax=docker/dockerfile:1
# Two images from one file (docker compose builds both; see compose.yaml):
#   web     the Django app under gunicorn, static files collected and served by whitenoise; no torch.
#   worker  a Celery generation worker with torch and diffusers, on a CUDA base (WORKER_BASE) by default.
# Both run the scripts in docker/, which CI runs too, directly, where no Docker engine is available.
#
#   docker build --target web -t drawbench-web .
#   docker build --target worker -t drawbench-worker .
#   docker build --target worker --build-arg WORKER_BASE=python:3.11-slim-bookworm -t drawbench-worker-cpu .

ARG PYTHON_BASE=python:3.11-slim-bookworm
# Any image with CUDA's runtime libraries; torch's wheels bring their own CUDA libraries, so the base mostly
# matters for the driver-facing pieces. A CPU-only worker: --build-arg WORKER_BASE=python:3.11-slim-bookworm.
ARG WORKER_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# --- web ------------------------------------------------------------------------------------------------------
FROM ${PYTHON_BASE} AS web
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=drawbench.settings.base \
    DRAWBENCH_PRODUCTION=1 \
    DRAWBENCH_VAR_DIR=/var/lib/drawbench \
    DRAWBENCH_STATIC_ROOT=/app/staticfiles
WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /var/lib/drawbench --create-home drawbench
# Dependencies first, from pyproject alone, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY docker/install.sh docker/
RUN docker/install.sh web --deps-only
COPY . .
RUN docker/install.sh web && chown -R drawbench /var/lib/drawbench
USER drawbench
EXPOSE 8000
# Asks with the site's own host name: Django refuses any other (ALLOWED_HOSTS); /healthz/ is exempt from the redirect
# to https.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen(r.Request('http://127.0.0.1:8000/healthz/', headers={'Host': os.environ['DJANGO_ALLOWED_HOSTS'].split(',')[0]}), timeout=4)"]
CMD ["docker/start-web.sh"]

# --- worker ---------------------------------------------------------------------------------------------------
FROM ${WORKER_BASE} AS worker
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=drawbench.settings.base \
    DRAWBENCH_PRODUCTION=1 \
    DRAWBENCH_VAR_DIR=/var/lib/drawbench \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
# CUDA images have no Python of their own; python images have one. Either way a virtual environment at /opt/venv.
RUN if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && useradd --system --uid 10001 --home-dir /var/lib/drawbench --create-home drawbench
COPY pyproject.toml README.md ./
COPY docker/install.sh docker/
RUN docker/install.sh worker --deps-only
COPY . .
RUN docker/install.sh worker && mkdir -p /var/lib/drawbench/hf && chown -R drawbench /var/lib/drawbench
USER drawbench
CMD ["docker/start-worker.sh"]
