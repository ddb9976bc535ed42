"""Staff pages under their Content-Security-Policy in a real headless Chromium (no CSP bypass): nothing is refused
(the console reports every blocked script, style or image), and the pages' own scripts run by their nonce.

Needs Debian's chromium at /usr/bin/chromium (installed by .ci/run); skipped without it unless
DRAWBENCH_REQUIRE_SERVICES=1.
"""

import pytest
from django.urls import reverse

from tests.browser_support import chromium, session_cookie
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, StudyFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page(monkeypatch, live_server, django_user_model, settings):
    user = django_user_model.objects.create_superuser(username="csp", password="pw-csp-12345", email="csp@x.org")
    cookie = session_cookie(user, settings, live_server.url)
    with chromium(monkeypatch) as browser:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        context.add_cookies([cookie])
        page = context.new_page()
        page.refused = []
        page.on(
            "console",
            lambda message: page.refused.append(message.text) if "Security Policy" in message.text else None,
        )
        yield page


def test_staff_pages_load_under_their_csp_with_nothing_refused_and_their_scripts_running(browser_page, live_server):
    prompt_set = PromptSetFactory()
    PromptFactory(prompt_set=prompt_set, position=1)
    study = StudyFactory(prompt_set=prompt_set)
    study.evaluated_models.set([EvaluatedModelFactory(), EvaluatedModelFactory()])
    page = browser_page

    for url in [
        reverse("dashboard:study-list"),
        reverse("dashboard:study-new"),
        reverse("dashboard:study-detail", args=[study.pk]),
        reverse("results:power") + "?prompts=20&raters=5",
        "/admin/",
        reverse("admin:studies_study_change", args=[study.pk]),
        reverse("admin:catalog_sample_changelist"),
        reverse("admin:catalog_evaluatedmodel_add"),
    ]:
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")

    # The results page's checkboxes submit their form through its nonce'd script (no inline handlers).
    page.goto(live_server.url + reverse("results:study-results", args=[study.pk]))
    with page.expect_navigation():
        page.locator("input[name=include_excluded]").check()
    assert "include_excluded=1" in page.url

    assert page.refused == []
