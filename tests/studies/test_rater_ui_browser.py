"""The rating page in headless Chromium on a phone (390 px) and a laptop (1366 px): no sideways scroll, no serious
or critical axe-core violations, a tap enlarges an image, Esc then Enter submits, and the form works without script.

Needs Debian's chromium at /usr/bin/chromium and axe-core in .ci/node_modules (both installed by .ci/run); skipped
without them unless DRAWBENCH_REQUIRE_SERVICES=1. Screenshots go to tests/artifacts/.
"""

import pytest
from django.urls import reverse

from drawbench.studies.models import Judgment
from tests.browser_support import AXE, axe_serious, chromium, require

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(monkeypatch):
    with chromium(monkeypatch) as browser:
        yield browser


def _new_page(browser, viewport: dict, **options):
    # bypass_csp: the rater page's policy would refuse the injected axe-core script.
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    return page


def _start(page, live_server, study) -> None:
    page.goto(live_server.url + reverse("rater:study-entry", args=[study.rater_token]))
    with page.expect_navigation():
        page.click("button.primary")
    page.wait_for_selector("#rating-form")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.thumb img')).every(img => img.complete && img.naturalWidth > 0)"
    )


@pytest.mark.parametrize("width", [360, 1920])
def test_the_rating_page_never_scrolls_sideways_from_360_to_1920_px(live_server, browser, make_study, width):
    study = make_study(n_prompts=1)
    page = _new_page(browser, {"width": width, "height": 800})
    _start(page, live_server, study)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    if width == 1920:
        assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight"), "one screen on a desktop"


@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["390px", "1366px"])
def test_rating_and_entry_pages_fit_the_width_and_pass_axe(live_server, browser, make_study, viewport, artifacts_dir):
    require(AXE)
    study = make_study(n_prompts=2, consent_text="We record your answers.")
    page = _new_page(browser, viewport, bypass_csp=True, has_touch=viewport is PHONE)
    width = viewport["width"]

    page.goto(live_server.url + reverse("rater:study-entry", args=[study.rater_token]))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the entry page scrolls sideways"
    assert axe_serious(page) == []
    page.check("input[name=consent]")
    with page.expect_navigation():
        page.click("button.primary")
    page.wait_for_selector("#rating-form")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= page.evaluate("window.innerWidth"), f"{scroll_width} px wide at {width} px"
    if viewport is PHONE:
        left, right = page.locator(".set").nth(0).bounding_box(), page.locator(".set").nth(1).bounding_box()
        assert right["y"] >= left["y"] + left["height"], "the sets stack on a phone"
    page.screenshot(path=str(artifacts_dir / f"rater_rating_{width}.png"), full_page=True)
    assert axe_serious(page) == []

    if viewport is PHONE:
        page.locator(".thumb").nth(9).tap()
        assert page.is_visible("#lightbox")
        box = page.locator("#lightbox img").bounding_box()
        assert box["width"] >= 0.8 * width
        assert page.inner_text("#lightbox figcaption") == "Set B · image 2 of 8"
        page.screenshot(path=str(artifacts_dir / f"rater_lightbox_{width}.png"))
        page.locator("#lightbox").tap()
        assert page.is_hidden("#lightbox")


def test_esc_then_enter_submits_instead_of_reopening_the_image(live_server, browser, make_study):
    study = make_study(n_prompts=2)
    page = _new_page(browser, LAPTOP)
    _start(page, live_server, study)
    page.keyboard.press("a")
    page.keyboard.press("l")
    page.click(".thumb >> nth=2")
    assert page.is_visible("#lightbox")
    page.keyboard.press("Escape")
    assert page.is_hidden("#lightbox")
    assert page.evaluate("document.activeElement.classList.contains('thumb')"), "focus goes back to the image"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.is_hidden("#lightbox")
    assert Judgment.objects.count() == 2
    # An image the rater tabs to still opens with Enter.
    page.wait_for_selector("#rating-form")
    page.focus(".thumb >> nth=0")
    page.keyboard.press("Enter")
    assert page.is_visible("#lightbox")


def test_without_javascript_the_form_posts_the_answers_to_the_rate_page(live_server, browser, make_study):
    study = make_study(n_prompts=2)
    page = _new_page(browser, PHONE, java_script_enabled=False)
    page.goto(live_server.url + reverse("rater:study-entry", args=[study.rater_token]))
    with page.expect_navigation():
        page.click("button.primary")
    assert page.is_visible("#noscript-note")
    assert "Comparison 1 of 2" in page.inner_text(".progress-text")
    page.click("label.choice:has(input[name=answer_fidelity][value=left])")
    page.click("label.choice:has(input[name=answer_alignment][value=tie])")
    with page.expect_navigation():
        page.click("#rating-form button[type=submit]")
    assert "Comparison 2 of 2" in page.inner_text(".progress-text")
    judgments = list(Judgment.objects.order_by("question"))
    assert len(judgments) == 2
    assert all(j.response_time_ms >= 0 for j in judgments)
