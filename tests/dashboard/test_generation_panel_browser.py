"""The study page in a real headless Chromium: its runs table follows a run live, without a reload, and the Resume
button it draws posts (with its CSRF token) to the resume action.

Needs Debian's chromium at /usr/bin/chromium (installed by .ci/run); skipped without it unless
DRAWBENCH_REQUIRE_SERVICES=1. Leaves a screenshot in tests/artifacts/.
"""

import pytest
from django.urls import reverse

from drawbench.generation.models import GenerationRun
from drawbench.generation.services import generation_batch_run, generation_run_create
from tests.browser_support import chromium, session_cookie
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, StudyFactory

SEED = "tests.generation.fake_backends.SeedImageBackend"
# The page polls every 3 s; a wait for its next redraw fails the test only after this long.
REDRAW_TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(monkeypatch, live_server, staff_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    cookie = session_cookie(staff_user, settings, live_server.url)
    with chromium(monkeypatch) as browser:
        # wait_for_function evaluates a string in the page, which the page's CSP (no eval) forbids; the page's own
        # script runs by its nonce (tests/test_web_security.py checks every page's scripts carry it).
        context = browser.new_context(viewport={"width": 1366, "height": 768}, bypass_csp=True)
        context.add_cookies([cookie])
        yield context.new_page()


def test_the_runs_table_follows_a_run_live_and_its_resume_button_works(page, live_server, artifacts_dir):
    prompt_set = PromptSetFactory(slug="live")
    prompts = [
        PromptFactory(prompt_set=prompt_set, position=1, text="A red colored car.", category="Colors"),
        PromptFactory(prompt_set=prompt_set, position=2, text="Two cats and one dog.", category="Counting"),
        PromptFactory(prompt_set=prompt_set, position=3, text="A green triangle.", category="Colors"),
    ]
    painter = EvaluatedModelFactory(name="painter", backend=SEED, config={"fail_on": "cats"})
    study = StudyFactory(prompt_set=prompt_set, samples_per_side=2)
    study.evaluated_models.set([painter, EvaluatedModelFactory(name="other", backend=SEED)])
    run = generation_run_create(evaluated_model=painter, prompt_set=prompt_set, samples_per_prompt=2)
    # Running, with no tasks queued: the test draws the batches itself, while the page is open.
    run.status = GenerationRun.Status.RUNNING
    run.attempt = 1
    run.save()
    generation_batch_run(run_id=run.pk, prompt_ids=[prompts[0].pk], attempt=1)

    page.goto(live_server.url + reverse("dashboard:study-detail", args=[study.pk]))
    row = page.locator(f"#runs-body tr.run[data-run='{run.pk}']")
    assert "2 / 6" in row.inner_text() and "running" in row.inner_text()

    generation_batch_run(run_id=run.pk, prompt_ids=[prompts[1].pk, prompts[2].pk], attempt=1)

    page.wait_for_function(
        f"document.querySelector(\"#runs-body tr.run[data-run='{run.pk}']\").innerText.includes('4 / 6')",
        timeout=REDRAW_TIMEOUT_MS,
    )
    assert "failed" in row.inner_text()
    failures = page.locator(f"#runs-body tr.run-failures[data-run='{run.pk}']")
    assert "prompt 2 (Counting) “Two cats and one dog.”: BackendError: cannot draw" in failures.inner_text()
    page.screenshot(path=str(artifacts_dir / "dashboard_generation_runs.png"), full_page=True)

    # The button was drawn by the poll's redraw (the server drew the row while the run was running, without one).
    with page.expect_navigation():
        row.get_by_role("button", name="Resume").click()

    assert f"Run {run.pk} resumed." in page.locator(".messages").inner_text()
    run.refresh_from_db()
    assert run.attempt == 2
