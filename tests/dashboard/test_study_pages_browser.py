"""The dashboard's study pages in headless Chromium: the new-study form, the study page and the results page fit a
phone (390 px) and laptops (1280, 1366 px) with no sideways scroll and no serious or critical axe-core violations; the
form shows only the chosen prompt set's categories, the copy-link button copies (or selects the link when it cannot),
the live page follows new judgments, and Log out logs out. All of it under the pages' own CSP, except where axe-core
is injected.

Needs Debian's chromium at /usr/bin/chromium and axe-core in .ci/node_modules (both installed by .ci/run); skipped
without them unless DRAWBENCH_REQUIRE_SERVICES=1. Screenshots go to tests/artifacts/.
"""

import random

import pytest
from django.urls import reverse
from django.utils import timezone

from drawbench.studies.models import Study
from drawbench.studies.services.studies import study_create, study_open
from tests.browser_support import AXE, axe_serious, chromium, fits, require, session_cookie
from tests.factories import (
    AssignmentFactory,
    EvaluatedModelFactory,
    JudgmentFactory,
    PromptFactory,
    PromptSetFactory,
    RaterFactory,
    SampleFactory,
)

# The page polls every 3 s; a wait for its next redraw fails the test only after this long.
REDRAW_TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(monkeypatch, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    with chromium(monkeypatch) as browser:
        yield browser


@pytest.fixture
def new_page(browser, live_server, staff_user, settings):
    """A logged-in page at a viewport; refused: what the CSP blocked (reported on the console)."""
    cookie = session_cookie(staff_user, settings, live_server.url)

    def make(width: int, height: int = 800, **options):
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        context.add_cookies([cookie])
        page = context.new_page()
        page.refused = []
        page.on("console", lambda m: page.refused.append(m.text) if "Content Security Policy" in m.text else None)
        return page

    return make


@pytest.fixture
def studies(db):
    """Two prompt sets; an open study between two imported models on "drawbench-mini" (3 categories, 6 prompts), rated
    by 4 raters on both questions, with names long enough to widen the results tables."""
    mini = PromptSetFactory(slug="drawbench-mini", title="DrawBench mini")
    other = PromptSetFactory(slug="other", title="Other set")
    categories = ["Colors", "Counting", "Conflicting"]
    prompts = [
        PromptFactory(prompt_set=mini, position=i + 1, category=categories[i % 3], text=f"A prompt number {i + 1}.")
        for i in range(6)
    ]
    for position, category in enumerate(["Text", "Text", "Rare words"], start=1):
        PromptFactory(prompt_set=other, position=position, category=category, text=f"Other prompt {position}.")
    models = [
        EvaluatedModelFactory(name="imagen-base-64px-toyworld-checkpoint", version="2026-11-30"),
        EvaluatedModelFactory(name="stable-diffusion-tiny-baseline-untrained", version="2026-11-30"),
    ]
    for model in models:
        for prompt in prompts:
            for index in range(2):
                SampleFactory(evaluated_model=model, prompt=prompt, index=index)
    study = study_create(
        name="Toy Imagen vs tiny SD baseline",
        prompt_set=mini,
        evaluated_models=models,
        samples_per_side=2,
        ratings_per_comparison=6,
        display_size=64,
    )
    study_open(study=study)
    Study.objects.filter(pk=study.pk).update(opened_at=timezone.now() - timezone.timedelta(minutes=5))
    rng = random.Random(7)
    for _ in range(4):
        rater = RaterFactory(study=study)
        for comparison in study.comparisons.all():
            assignment = AssignmentFactory(comparison=comparison, rater=rater, completed_at=timezone.now())
            for question in study.questions:
                JudgmentFactory(assignment=assignment, question=question, choice=rng.choice(["A", "A", "tie", "B"]))
    return {"study": Study.objects.get(pk=study.pk), "mini": mini, "other": other}


@pytest.mark.parametrize("width", [390, 1366])
def test_the_study_pages_fit_and_pass_axe(new_page, live_server, studies, artifacts_dir, width):
    require(AXE)
    study = studies["study"]
    pages = {
        "study_new": reverse("dashboard:study-new"),
        "study_detail": reverse("dashboard:study-detail", args=[study.pk]),
        "study_results": reverse("results:study-results", args=[study.pk]),
    }
    # bypass_csp: the pages' policy would refuse the injected axe-core script.
    page = new_page(width, bypass_csp=True)
    for name, url in pages.items():
        page.goto(live_server.url + url)
        page.wait_for_load_state("networkidle")
        if name == "study_new":
            page.select_option("#id_prompt_set", str(studies["mini"].pk))
            page.locator("#rater-operations summary").click()  # measured and checked unfolded too
        fits(page)
        page.screenshot(path=str(artifacts_dir / f"dashboard_{name}_{width}.png"), full_page=True)
        assert axe_serious(page) == [], name


def test_the_results_tables_scroll_inside_their_cards_at_1280_px(new_page, live_server, studies, artifacts_dir):
    page = new_page(1280)
    page.goto(live_server.url + reverse("results:study-results", args=[studies["study"].pk]))
    fits(page)
    # Every table sits in a scrolling wrapper no wider than its card.
    overflowing = page.evaluate(
        """() => Array.from(document.querySelectorAll('table')).filter(table => {
              const card = table.closest('.card');
              const box = table.parentElement.getBoundingClientRect(), cardBox = card.getBoundingClientRect();
              return !table.parentElement.classList.contains('table-scroll') || box.right > cardBox.right + 0.5;
           }).length"""
    )
    assert overflowing == 0
    page.screenshot(path=str(artifacts_dir / "dashboard_study_results_1280.png"), full_page=True)
    assert page.refused == []


def test_the_form_shows_only_the_chosen_sets_categories_and_creates_the_study(new_page, live_server, studies):
    mini, other = studies["mini"], studies["other"]
    page = new_page(1366)  # the page's own CSP: its static script must run under it
    page.goto(live_server.url + reverse("dashboard:study-new"))
    mini_group = page.locator(f".category-group[data-prompt-set='{mini.pk}']")
    other_group = page.locator(f".category-group[data-prompt-set='{other.pk}']")
    assert page.is_visible("#categories-choose") and mini_group.is_hidden() and other_group.is_hidden()

    page.select_option("#id_prompt_set", str(other.pk))
    assert other_group.is_visible() and mini_group.is_hidden()
    assert "Text (2)" in other_group.inner_text() and "Rare words (1)" in other_group.inner_text()
    page.get_by_label("Text (2)").check()

    page.select_option("#id_prompt_set", str(mini.pk))
    assert mini_group.is_visible() and other_group.is_hidden()
    assert page.locator(f"#{page.get_by_label('Text (2)').get_attribute('id')}").is_disabled(), "not posted"
    page.get_by_label("Counting (2)").check()
    page.fill("#id_name", "From the browser")
    for box in page.locator("input[name=evaluated_models]").all():
        box.check()
    page.fill("#id_samples_per_side", "2")
    with page.expect_navigation():
        page.get_by_role("button", name="Create study").click()

    created = Study.objects.get(name="From the browser")
    assert created.categories == ["Counting"] and created.comparisons.count() == 2
    assert "From the browser" in page.locator("h1").inner_text()
    assert page.refused == []


def test_the_form_names_what_is_wrong_once_and_keeps_the_choices(new_page, live_server, studies, artifacts_dir):
    mini = studies["mini"]
    page = new_page(1366)
    page.goto(live_server.url + reverse("dashboard:study-new"))
    page.select_option("#id_prompt_set", str(mini.pk))
    page.get_by_label("Colors (2)").check()
    page.fill("#id_name", "Too many samples")
    for box in page.locator("input[name=evaluated_models]").all():
        box.check()
    page.fill("#id_samples_per_side", "4")
    with page.expect_navigation():
        page.get_by_role("button", name="Create study").click()

    assert not Study.objects.filter(name="Too many samples").exists()
    text = page.inner_text("main")
    assert text.count("imagen-base-64px-toyworld-checkpoint@2026-11-30 generates nothing") == 1
    assert "The study was not created." in text
    assert page.get_by_label("Colors (2)").is_checked(), "the choice survives the error"
    assert page.locator(f".category-group[data-prompt-set='{mini.pk}']").is_visible()
    page.screenshot(path=str(artifacts_dir / "dashboard_study_new_errors.png"), full_page=True)


def test_copy_link_copies_and_falls_back_to_selecting_the_link(browser, new_page, live_server, studies):
    study = studies["study"]
    url = live_server.url + reverse("dashboard:study-detail", args=[study.pk])
    link = live_server.url + reverse("rater:study-entry", args=[study.rater_token])

    page = new_page(1366, permissions=["clipboard-read", "clipboard-write"])
    page.goto(url)
    page.get_by_role("button", name="Copy link").click()
    page.locator("#copy-status", has_text="Copied the rater link.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == link

    refused = new_page(1366)
    refused.add_init_script("navigator.clipboard.writeText = () => Promise.reject(new Error('denied'))")
    refused.goto(url)
    refused.get_by_role("button", name="Copy link").click()
    refused.locator("#copy-status", has_text="the link is selected").wait_for()
    selected = refused.evaluate(
        "[document.activeElement.id, document.activeElement.selectionStart, document.activeElement.selectionEnd]"
    )
    assert selected == ["rater-url", 0, len(link)]
    assert page.refused == [] and refused.refused == []


def test_the_live_page_follows_new_judgments(new_page, live_server, studies):
    study = studies["study"]
    page = new_page(1366)
    page.goto(live_server.url + reverse("dashboard:study-detail", args=[study.pk]))
    counting = page.locator("#categories-body tr[data-category='Counting'] .cat-done")
    assert counting.inner_text() == "16 / 24"
    assert page.inner_text("#raters-started") == "4"
    assert page.inner_text("#time-to-finish").startswith("about")

    rater = RaterFactory(study=study)
    comparison = study.comparisons.filter(prompt__category="Counting").first()
    assignment = AssignmentFactory(comparison=comparison, rater=rater, completed_at=timezone.now())
    JudgmentFactory(assignment=assignment, question="fidelity")

    page.locator("#categories-body tr[data-category='Counting'] .cat-done", has_text="17 / 24").wait_for(
        timeout=REDRAW_TIMEOUT_MS
    )
    assert page.inner_text("#raters-started") == "5"
    assert page.refused == []


def test_log_out_from_the_header(new_page, live_server, studies):
    page = new_page(390)
    page.goto(live_server.url + reverse("dashboard:study-list"))
    fits(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    page.goto(live_server.url + reverse("dashboard:study-list"))
    assert "/login/" in page.url
