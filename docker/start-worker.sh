#!/bin/sh
# Start a Celery generation worker in the foreground: the worker image's command.
#   DRAWBENCH_WORKER_QUEUES       queues to consume (default gpu,cpu; see README "Workers")
#   DRAWBENCH_WORKER_CONCURRENCY  tasks at once (default 1: one model on one accelerator)
#   DRAWBENCH_WORKER_POOL         Celery pool (default solo: one task in the main process, as a GPU wants)
# One worker per GPU: give each its own CUDA_VISIBLE_DEVICES (compose.worker.yaml does with GPU=n).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

exec "$PYTHON" -m celery -A drawbench worker \
  -Q "${DRAWBENCH_WORKER_QUEUES:-gpu,cpu}" \
  --concurrency "${DRAWBENCH_WORKER_CONCURRENCY:-1}" \
  --pool "${DRAWBENCH_WORKER_POOL:-solo}" \
  --hostname "${DRAWBENCH_WORKER_NAME:-worker}@%h" \
  --loglevel "${DRAWBENCH_WORKER_LOG_LEVEL:-INFO}"
