"""The rater's pages through Django's test client: entry, rating, bad payloads, finish."""

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from drawbench.studies import views
from drawbench.studies.models import Assignment, Judgment, Rater, Study
from drawbench.studies.services import answering, errors
from drawbench.studies.services.studies import study_close

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r'name="key" value="([^"]+)"')


def entry_url(study: Study) -> str:
    return reverse("rater:study-entry", args=[study.rater_token])


def rate_url(study: Study) -> str:
    return reverse("rater:rate", args=[study.rater_token])


def done_url(study: Study) -> str:
    return reverse("rater:done", args=[study.rater_token])


def start(client: Client, study: Study) -> str:
    """Press Start and return the key of the first comparison shown."""
    response = client.post(entry_url(study))
    assert response.status_code == 302
    return shown_key(client.get(rate_url(study)))


def shown_key(response) -> str:
    assert response.status_code == 200
    return KEY_RE.search(response.content.decode()).group(1)


def good_payload(key: str, /, **overrides) -> dict:
    return {"key": key, "answer_fidelity": "left", "answer_alignment": "tie", "response_time_ms": "2345"} | overrides


def test_study_link_shows_the_instructions_and_a_start_button(client, make_study):
    study = make_study(instructions="Take your time.")

    response = client.get(entry_url(study))

    html = response.content.decode()
    assert response.status_code == 200
    for text in (
        "Which set of images is of higher quality?",
        "Which set of images better represents the text caption?",
        "I prefer set A",
        "I am indifferent",
        "I prefer set B",
        "The two sets are shown in random order.",
        "Take your time.",
        ">Start<",
    ):
        assert text in html
    for key in "ASDJKL":
        assert f"<kbd>{key}</kbd>" in html
    assert Rater.objects.count() == 0


def test_start_makes_the_visitor_a_rater_once(client, make_study):
    study = make_study()

    first = client.post(entry_url(study))
    client.post(entry_url(study))

    assert first.status_code == 302 and first["Location"] == rate_url(study)
    assert Rater.objects.filter(study=study).count() == 1
    assert ">Continue<" in client.get(entry_url(study)).content.decode()


@pytest.mark.parametrize(("status", "http_status"), [("draft", 404), ("generating", 404), ("closed", 410)])
def test_study_link_of_a_study_that_is_not_open_says_so(client, make_study, status, http_status):
    study = make_study(open_study=False)
    Study.objects.filter(pk=study.pk).update(status=status)

    get, post = client.get(entry_url(study)), client.post(entry_url(study))

    assert get.status_code == post.status_code == http_status
    assert "not open" in get.content.decode() or "closed" in get.content.decode()
    assert Rater.objects.count() == 0


def test_an_unknown_study_link_is_not_found(client):
    assert client.get(reverse("rater:study-entry", args=["not-a-token"])).status_code == 404


def test_rating_page_without_a_rater_sends_the_visitor_to_the_study_link(client, make_study):
    study = make_study()

    response = client.get(rate_url(study))

    assert response.status_code == 302 and response["Location"] == entry_url(study)


def test_rating_page_shows_the_caption_two_sets_the_questions_and_the_progress(client, make_study):
    study = make_study(n_prompts=3)
    client.post(entry_url(study))

    response = client.get(rate_url(study))

    html = response.content.decode()
    assignment = Assignment.objects.order_by("served_at", "id").first()
    caption = assignment.comparison.prompt.text
    assert response.status_code == 200
    assert f"“{caption}”" in html
    assert html.count('alt="Set A, image') == html.count('alt="Set B, image') == 8
    assert "Which set of images is of higher quality?" in html
    assert f"Which set of images better represents the text caption: “{caption}”?" in html
    assert "Comparison <strong>1</strong> of 3" in html
    assert f'name="key" value="{assignment.key}"' in html
    for key in "asdjkl":
        assert f'data-key="{key}"' in html
    assert 'name="response_time_ms"' in html


def test_rating_page_shows_the_same_comparison_again_until_it_is_answered(client, make_study):
    study = make_study(n_prompts=3)
    first_key = start(client, study)
    served = Assignment.objects.count()

    assert shown_key(client.get(rate_url(study))) == first_key
    assert Assignment.objects.count() == served


def test_answering_records_judgments_and_moves_to_the_next_comparison(client, make_study):
    study = make_study(n_prompts=2)
    key = start(client, study)

    response = client.post(rate_url(study), good_payload(key))

    assert response.status_code == 302 and response["Location"] == rate_url(study)
    assignment = Assignment.objects.get(key=key)
    left_is_a = assignment.left_model_id == assignment.comparison.model_a_id
    stored = dict(Judgment.objects.filter(assignment=assignment).values_list("question", "choice"))
    assert stored == {"fidelity": "A" if left_is_a else "B", "alignment": "tie"}
    assert set(Judgment.objects.values_list("response_time_ms", flat=True)) == {2345}
    next_page = client.get(rate_url(study))
    assert shown_key(next_page) != key
    assert "Comparison <strong>2</strong> of 2" in next_page.content.decode()


def test_the_last_answer_records_the_rater_complete_and_leads_to_the_finish_page(client, make_study):
    study = make_study(n_prompts=1)
    key = start(client, study)
    response = client.post(rate_url(study), good_payload(key), follow=True)

    # The answer that finds nothing left records the rater complete (a POST) and leads to the finish page.
    assert response.redirect_chain == [(done_url(study), 302)]
    assert "Thank you" in response.content.decode()
    assert "You answered 1 comparison." in response.content.decode()
    rater = Rater.objects.get()
    assert rater.finished_at is not None and rater.completed_at is not None


BAD_FORMS = [
    pytest.param(
        {"answer_alignment": None},
        errors.ERROR_ANSWER_MISSING.format(text="Which set of images better represents the text caption?"),
        id="missing-question",
    ),
    pytest.param(
        {"answer_fidelity": "model_a"},
        errors.ERROR_CHOICE_UNKNOWN.format(choice="model_a", question="fidelity"),
        id="unknown-choice",
    ),
    pytest.param(
        {"answer_style": "left"},
        errors.ERROR_ANSWER_UNEXPECTED.format(question="style"),
        id="extra-question",
    ),
    pytest.param(
        {"response_time_ms": "-1"},
        errors.ERROR_RESPONSE_TIME.format(max=answering.MAX_RESPONSE_TIME_MS, value=-1),
        id="negative-time",
    ),
    pytest.param(
        {"response_time_ms": "999999999999"},
        errors.ERROR_RESPONSE_TIME.format(max=answering.MAX_RESPONSE_TIME_MS, value=999999999999),
        id="absurd-time",
    ),
    pytest.param(
        {"response_time_ms": "soon"},
        views.ERROR_RESPONSE_TIME_FORMAT.format(value="'soon'"),
        id="time-not-a-number",
    ),
    pytest.param(
        {"response_time_ms": None},
        views.ERROR_RESPONSE_TIME_FORMAT.format(value="''"),
        id="time-missing",
    ),
    pytest.param({"key": "tampered"}, views.ERROR_ASSIGNMENT_UNKNOWN, id="unknown-key"),
    pytest.param({"key": None}, views.ERROR_ASSIGNMENT_UNKNOWN, id="no-key"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_FORMS)
def test_a_bad_answer_form_is_shown_again_with_the_message_and_nothing_is_written(
    client, make_study, overrides, message
):
    study = make_study(n_prompts=2)
    key = start(client, study)
    payload = {k: v for k, v in good_payload(key, **overrides).items() if v is not None}

    response = client.post(rate_url(study), payload)

    assert response.status_code == 400
    html = response.content.decode()
    assert escape(message) in html
    assert KEY_RE.search(html).group(1) == key
    assert Judgment.objects.count() == 0
    assert Assignment.objects.get(key=key).completed_at is None


def test_a_form_shown_again_keeps_the_answers_already_chosen(client, make_study):
    study = make_study(n_prompts=1)
    key = start(client, study)

    response = client.post(rate_url(study), good_payload(key, answer_alignment="", answer_fidelity="right"))

    assert response.status_code == 400
    assert re.search(r'name="answer_fidelity" value="right"[^>]*checked', response.content.decode())


def test_a_different_answer_sent_for_an_answered_comparison_is_a_conflict_and_the_first_stands(client, make_study):
    study = make_study(n_prompts=2)
    key = start(client, study)
    client.post(rate_url(study), good_payload(key))

    response = client.post(rate_url(study), good_payload(key, answer_fidelity="right"))

    assert response.status_code == 409
    assert escape(errors.ERROR_ASSIGNMENT_ANSWERED) in response.content.decode()
    assert Judgment.objects.count() == 2
    assert Judgment.objects.filter(question="alignment").get().choice == "tie"


def test_the_same_answer_sent_twice_moves_on_and_is_recorded_once(client, make_study):
    study = make_study(n_prompts=2)
    key = start(client, study)

    first = client.post(rate_url(study), good_payload(key))
    again = client.post(rate_url(study), good_payload(key))

    assert first.status_code == again.status_code == 302
    assert again["Location"] == rate_url(study)
    assert Judgment.objects.count() == 2
    assert shown_key(client.get(rate_url(study))) != key


def test_an_assignment_key_of_another_rater_is_refused(client, make_study):
    study = make_study(n_prompts=2)
    others_key = start(Client(), study)
    start(client, study)

    response = client.post(rate_url(study), good_payload(others_key))

    assert response.status_code == 400
    assert escape(views.ERROR_ASSIGNMENT_UNKNOWN) in response.content.decode()
    assert Judgment.objects.count() == 0


def test_an_assignment_key_of_another_study_is_refused(client, make_study):
    study, other = make_study(n_prompts=1), make_study(n_prompts=1)
    other_key = start(client, other)
    start(client, study)

    response = client.post(rate_url(study), good_payload(other_key))

    assert response.status_code == 400
    assert escape(views.ERROR_ASSIGNMENT_UNKNOWN) in response.content.decode()
    assert Judgment.objects.count() == 0


def test_an_answer_to_a_closed_study_is_refused_and_nothing_is_written(client, make_study):
    study = make_study(n_prompts=2)
    key = start(client, study)
    study_close(study=study)

    response = client.post(rate_url(study), good_payload(key))

    assert response.status_code == 400
    assert escape(errors.ERROR_STUDY_NOT_OPEN) in response.content.decode()
    assert Judgment.objects.count() == 0
    assert client.get(rate_url(study)).status_code == 410


def test_an_answer_without_a_rater_session_is_refused(client, make_study):
    study = make_study(n_prompts=1)
    key = start(Client(), study)

    response = client.post(rate_url(study), good_payload(key))

    assert response.status_code == 400
    assert escape(views.ERROR_SESSION_MISSING) in response.content.decode()
    assert Judgment.objects.count() == 0


def test_the_rating_form_needs_its_csrf_token(make_study):
    study = make_study(n_prompts=1)
    client = Client(enforce_csrf_checks=True)
    page = client.get(entry_url(study))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    assert client.post(entry_url(study)).status_code == 403
    client.post(entry_url(study), {"csrfmiddlewaretoken": token})
    key = shown_key(client.get(rate_url(study)))

    response = client.post(rate_url(study), good_payload(key))

    assert response.status_code == 403
    assert Judgment.objects.count() == 0


def test_rater_pages_are_not_cached(client, make_study):
    study = make_study(n_prompts=1)
    start(client, study)

    assert "no-store" in client.get(rate_url(study))["Cache-Control"]
