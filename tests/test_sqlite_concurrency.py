"""The demo's database serves a crowd: 20 raters who start at the same moment and answer through the JSON rater API,
against `manage.py runserver` (the demo's threaded server) on a SQLite file, get no error at all.

SQLite allows one writer at a time. In WAL mode with IMMEDIATE transactions (drawbench/settings/base.py) a writer
waits for the lock, up to the busy timeout, instead of failing with "database is locked" when it tries to upgrade a
read lock that another writer's transaction blocks.
"""

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
RATERS = 20
PROMPTS = 6
ANSWERS = {"fidelity": "left", "alignment": "tie"}

SETUP = f"""
import django
django.setup()
from drawbench.studies.services.studies import study_create, study_open
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, SampleFactory

prompt_set = PromptSetFactory()
prompts = [PromptFactory(prompt_set=prompt_set, position=i + 1) for i in range({PROMPTS})]
models = [EvaluatedModelFactory() for _ in range(2)]
for model in models:
    for prompt in prompts:
        SampleFactory(evaluated_model=model, prompt=prompt, index=0)
study = study_create(
    name="Crowd", prompt_set=prompt_set, evaluated_models=models, samples_per_side=1, ratings_per_comparison={RATERS},
    min_response_time_ms=0,
)
print(study_open(study=study).rater_token)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def demo_server(tmp_path):
    """A migrated SQLite file with one open study, served by runserver as the demo serves it; yields (url, token)."""
    database = tmp_path / "demo.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DRAWBENCH_", "DATABASE_URL"))}
    env.update(
        DJANGO_SETTINGS_MODULE="drawbench.settings.base",
        DATABASE_URL=f"sqlite:///{database}",
        DRAWBENCH_VAR_DIR=str(tmp_path / "var"),
        DRAWBENCH_MEDIA_ROOT=str(tmp_path / "media"),
        # One client address for the whole crowd: throttles out of the way, as raters from one lab's network would be.
        DRAWBENCH_RATER_START_RATE="10000/min",
        DRAWBENCH_RATER_SUBMIT_RATE="10000/min",
        DRAWBENCH_LOG_LEVEL="ERROR",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
    token = subprocess.run(
        [sys.executable, "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout.split()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz/", timeout=2).raise_for_status()
                break
            except requests.RequestException:
                assert server.poll() is None and time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", token, database
    finally:
        server.terminate()
        server.wait(timeout=30)


def rate_everything(base: str, token: str, start: threading.Barrier, errors: list, answered: list) -> None:
    session = requests.Session()
    api = f"{base}/api/rater/{token}"

    def call(method: str, path: str, **kwargs):
        try:
            response = session.request(method, f"{api}/{path}", timeout=60, **kwargs)
        except requests.RequestException as exc:
            errors.append(f"{method} {path}: {exc!r}")
            return None
        if response.status_code >= 400:
            errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
            return None
        return response.json()

    start.wait()
    started = call("POST", "start/", json={})
    if started is None:
        return
    session.headers["Authorization"] = f"Rater {started['rater_token']}"
    current = call("GET", "assignment/")
    while current is not None and current.get("assignment") is not None:
        body = {"key": current["assignment"]["key"], "answers": ANSWERS, "response_time_ms": 1500}
        result = call("POST", "answers/", json=body)
        if result is None:
            return
        answered.append(body["key"])
        current = result.get("next")


@pytest.mark.slow
def test_twenty_raters_at_once_on_sqlite_get_no_error(demo_server):
    base, token, database = demo_server
    errors: list[str] = []
    answered: list[str] = []
    start = threading.Barrier(RATERS)
    raters = [
        threading.Thread(target=rate_everything, args=(base, token, start, errors, answered)) for _ in range(RATERS)
    ]
    for rater in raters:
        rater.start()
    for rater in raters:
        rater.join(timeout=300)

    assert errors == []
    # Every rater answered every comparison (one per prompt), each answer two judgments, all of them stored.
    assert len(answered) == RATERS * PROMPTS
    with sqlite3.connect(database) as connection:
        judgments = connection.execute("SELECT COUNT(*) FROM studies_judgment").fetchone()[0]
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert judgments == RATERS * PROMPTS * len(ANSWERS)
    assert journal == "wal"
