"""A real headless Chromium walks the rater pages with the keyboard only and the stored judgments are checked.

Needs Debian's chromium at /usr/bin/chromium (installed by .ci/run); skipped without it unless
DRAWBENCH_REQUIRE_SERVICES=1. Leaves screenshots at 1366×768 in tests/artifacts/.
"""

import pytest
from django.urls import reverse

from drawbench.studies.models import Assignment, Judgment
from drawbench.studies.selectors import assignment_pending_for_rater
from tests.browser_support import chromium

LAPTOP = {"width": 1366, "height": 768}

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page(monkeypatch):
    with chromium(monkeypatch) as browser:
        yield browser.new_page(viewport=LAPTOP)


def _wait_for_focus(page, selector: str) -> None:
    """Chrome applies autofocus at a rendering step after the load event: wait for it before typing."""
    page.wait_for_function(f"document.activeElement && document.activeElement.matches({selector!r})")


def expected_choice(displayed: str, *, left_is_a: bool) -> str:
    if displayed == "tie":
        return "tie"
    return "A" if (displayed == "left") == left_is_a else "B"


def test_a_rater_answers_a_comparison_with_the_keyboard_only(live_server, browser_page, make_study, artifacts_dir):
    study = make_study(n_prompts=2)
    page = browser_page
    token = study.rater_token

    page.goto(live_server.url + reverse("rater:study-entry", args=[token]))
    page.screenshot(path=str(artifacts_dir / "rater_instructions.png"))
    _wait_for_focus(page, "button.primary")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{reverse('rater:rate', args=[token])}")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.thumb img')).every(img => img.complete && img.naturalWidth > 0)"
    )
    assignment = Assignment.objects.order_by("served_at", "id").first()

    # Tab to the first image, enlarge it with Enter, close it with Esc.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.is_visible("#lightbox")
    page.screenshot(path=str(artifacts_dir / "rater_lightbox.png"))
    page.keyboard.press("Escape")
    assert page.is_hidden("#lightbox")

    page.keyboard.press("d")  # fidelity: I prefer set B
    page.keyboard.press("j")  # alignment: I prefer set A
    assert page.is_checked('input[name="answer_fidelity"][value="right"]')
    assert page.is_checked('input[name="answer_alignment"][value="left"]')
    assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight"), "the page scrolls at 1366×768"
    page.screenshot(path=str(artifacts_dir / "rater_rating_page.png"))
    with page.expect_navigation():
        page.keyboard.press("Enter")

    assert "Comparison 2 of 2" in page.inner_text(".progress-text")
    left_is_a = assignment.left_model_id == assignment.comparison.model_a_id
    judgments = {j.question: j for j in Judgment.objects.filter(assignment=assignment)}
    assert {q: j.choice for q, j in judgments.items()} == {
        "fidelity": expected_choice("right", left_is_a=left_is_a),
        "alignment": expected_choice("left", left_is_a=left_is_a),
    }
    assert all(j.left_model_id == assignment.left_model_id for j in judgments.values())
    assert judgments["fidelity"].response_time_ms == judgments["alignment"].response_time_ms >= 0


def test_enter_without_every_answer_submits_nothing(live_server, browser_page, make_study):
    study = make_study(n_prompts=1)
    page = browser_page

    page.goto(live_server.url + reverse("rater:study-entry", args=[study.rater_token]))
    _wait_for_focus(page, "button.primary")
    page.keyboard.press("Enter")
    page.wait_for_selector("#rating-form")
    page.keyboard.press("s")
    page.keyboard.press("Enter")

    assert "Please answer" in page.inner_text("#form-hint")
    assert Judgment.objects.count() == 0


PROLIFIC_QUERY = "PROLIFIC_PID=5f1c0ffee0ddba11c0ffee00&STUDY_ID=64a1b2c3d4e5f60718293a4b&SESSION_ID=sess-9"
# Keys per question, in the order of DisplayedChoice: left, tie, right.
KEYS = {"fidelity": {"left": "a", "tie": "s", "right": "d"}, "alignment": {"left": "j", "tie": "k", "right": "l"}}


def _wait_for_images(page) -> None:
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.thumb img')).every(img => img.complete && img.naturalWidth > 0)"
    )


def _answers_for(assignment: Assignment) -> dict[str, str]:
    """What the test rater answers: what a careful rater would on controls; set B, then set A, on comparisons."""
    if assignment.kind == Assignment.Kind.COMPARISON:
        return {"fidelity": "right", "alignment": "left"}
    trial = assignment.gold_trial
    return {
        q: trial.expected(q, reference_on_left=assignment.reference_on_left) or "tie" for q in ("fidelity", "alignment")
    }


def test_a_whole_session_from_a_prolific_link_with_the_keyboard_only(
    live_server, browser_page, make_study, artifacts_dir
):
    from drawbench.studies.models import ControlAnswer, Rater

    study = make_study(
        n_prompts=1,
        consent_text="We record your answers and how long you take.\nYou may stop at any time.",
        practice_items=1,
        gold_rate=1.0,
        completion_code="DRAWBENCH7",
        # A script answers faster than any person: without this the rater is rightly flagged as too fast.
        min_response_time_ms=0,
    )
    page = browser_page
    shots = []

    def shot(name: str) -> None:
        path = artifacts_dir / f"rater_session_{len(shots) + 1:02d}_{name}.png"
        page.screenshot(path=str(path))
        shots.append(path)

    page.goto(f"{live_server.url}{reverse('rater:study-entry', args=[study.rater_token])}?{PROLIFIC_QUERY}")
    assert "We record your answers" in page.inner_text(".consent")
    shot("consent_and_instructions")
    _wait_for_focus(page, "input[name=consent]")
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    kinds = []
    while "/rate/" in page.url:
        _wait_for_images(page)
        rater = Rater.objects.get()
        assignment = assignment_pending_for_rater(rater=rater)
        kinds.append(assignment.kind)
        assert page.is_visible("#practice-banner") == (assignment.kind == Assignment.Kind.PRACTICE)
        if len(kinds) == 2:
            assert "practice item" in page.inner_text("#practice-feedback")
        for question, displayed in _answers_for(assignment).items():
            page.keyboard.press(KEYS[question][displayed])
        assert page.evaluate("document.documentElement.scrollHeight <= window.innerHeight"), "the page scrolls"
        shot(assignment.kind)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.wait_for_load_state()

    assert page.url.endswith(reverse("rater:done", args=[study.rater_token]))
    assert page.inner_text("#completion-code") == "DRAWBENCH7"
    shot("completion_code")

    rater = Rater.objects.get()
    assert (rater.platform, rater.external_id, rater.platform_session_id) == (
        "prolific", "5f1c0ffee0ddba11c0ffee00", "sess-9",
    )  # fmt: skip
    assert rater.consented_at is not None and rater.completed_at is not None
    assert kinds == ["practice", "gold", "comparison"]
    gold_answers = ControlAnswer.objects.filter(rater=rater, practice=False)
    assert gold_answers.count() == 2 and not gold_answers.filter(correct=False).exists()
    assert Judgment.objects.filter(rater=rater).count() == 2
    assert not rater.flags.exists()
    assert all(path.stat().st_size > 0 for path in shots) and len(shots) == 5


def test_a_dropped_connection_during_submit_is_retried_and_recorded_once(live_server, browser_page, make_study):
    study = make_study(n_prompts=2)
    page = browser_page
    dropped = []

    def drop_the_first_answer_after_the_server_took_it(route) -> None:
        if not dropped:
            response = route.fetch()  # the server records the answer...
            dropped.append(response.status)
            route.abort("connectionreset")  # ...and the browser never hears back
        else:
            route.continue_()

    page.route(
        f"**{reverse('api-rater-answer', args=[study.rater_token])}", drop_the_first_answer_after_the_server_took_it
    )
    page.goto(live_server.url + reverse("rater:study-entry", args=[study.rater_token]))
    _wait_for_focus(page, "button.primary")
    page.keyboard.press("Enter")
    page.wait_for_selector("#rating-form")
    first = Assignment.objects.order_by("served_at", "id").first()
    page.keyboard.press("a")
    page.keyboard.press("k")
    with page.expect_navigation(timeout=15_000):
        page.keyboard.press("Enter")

    assert dropped == [201]
    assert "Comparison 2 of 2" in page.inner_text(".progress-text")
    assert Judgment.objects.filter(assignment=first).count() == 2
    assert Judgment.objects.count() == 2


def test_stop_here_posts_and_the_finish_page_gives_no_code(live_server, browser_page, make_study):
    from drawbench.studies.models import Rater

    study = make_study(n_prompts=2, completion_code="DRAWBENCH7")
    page = browser_page

    page.goto(live_server.url + reverse("rater:study-entry", args=[study.rater_token]))
    _wait_for_focus(page, "button.primary")
    page.keyboard.press("Enter")
    page.wait_for_selector("#rating-form")
    with page.expect_navigation():
        page.click("#stop-form button")

    assert page.url.endswith(reverse("rater:done", args=[study.rater_token]))
    assert "no completion code" in page.inner_text("main") and "DRAWBENCH7" not in page.content()
    rater = Rater.objects.get()
    assert rater.finished_at is not None and rater.completed_at is None
