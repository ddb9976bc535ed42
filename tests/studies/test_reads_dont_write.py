"""No GET changes state: every rater GET URL, page and API, is walked in each state a rater passes through, and no
row of any studies table changes. What ends a rater's work (Finish, Stop here, the answer that finds nothing left)
is a POST."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from drawbench.studies.models import Rater
from tests.studies.snapshots import changed_tables, studies_rows

pytestmark = pytest.mark.django_db

PROLIFIC = {"PROLIFIC_PID": "5f1c0ffee0ddba11c0ffee00", "STUDY_ID": "64a1b2c3", "SESSION_ID": "s-1"}


def url(name: str, study) -> str:
    return reverse(name, args=[study.rater_token])


def entry_with(study, query: dict[str, str]) -> str:
    return url("rater:study-entry", study) + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def walk(study, browser: Client, token: str | None) -> list[tuple[str, int]]:
    """GET every rater URL as this browser (and, with `token`, as its API client), twice; (url, status) of each."""
    api = APIClient()
    if token:
        api.credentials(HTTP_AUTHORIZATION=f"Rater {token}")
    urls = [
        (browser, url("rater:study-entry", study)),
        (browser, entry_with(study, PROLIFIC)),
        (browser, entry_with(study, {"external_id": "someone-else"})),
        (browser, url("rater:rate", study)),
        (browser, url("rater:done", study)),
        (browser, url("api-rater-assignment", study)),
        (browser, url("api-rater-completion", study)),
        (api, url("api-rater-assignment", study)),
        (api, url("api-rater-completion", study)),
        (Client(), entry_with(study, PROLIFIC)),  # the same crowd id from another browser
    ]
    return [(path, client.get(path).status_code) for _ in range(2) for client, path in urls]


def answer_everything(study, client: Client) -> None:
    while (page := client.get(url("rater:rate", study))).context and page.context.get("display") is not None:
        key = page.context["display"].key
        form = {"key": key, "answer_fidelity": "left", "answer_alignment": "tie", "response_time_ms": "2000"}
        assert client.post(url("rater:rate", study), form).status_code == 302


def assert_walk_writes_nothing(study, browser: Client, token: str | None) -> list[tuple[str, int]]:
    before = studies_rows()
    visited = walk(study, browser, token)
    assert changed_tables(before, studies_rows()) == [], visited
    assert all(status < 500 for _, status in visited), visited
    return visited


def test_a_visitor_who_has_not_started_writes_nothing(make_study):
    study = make_study(n_prompts=2)

    assert_walk_writes_nothing(study, Client(), None)


def test_a_rater_holding_an_item_writes_nothing_by_looking_again(make_study):
    study = make_study(n_prompts=2)
    browser = Client()
    browser.post(entry_with(study, PROLIFIC))
    browser.get(url("rater:rate", study))  # served: its first item

    assert_walk_writes_nothing(study, browser, Rater.objects.get().access_token)


def test_a_rater_with_nothing_left_is_recorded_complete_by_the_answer_not_by_a_get(make_study):
    study = make_study(n_prompts=1)
    browser = Client()
    browser.post(entry_with(study, PROLIFIC))
    answer_everything(study, browser)

    # The answer that found nothing left (a POST) recorded it; looking afterwards writes nothing.
    rater = Rater.objects.get()
    assert rater.completed_at is not None
    assert_walk_writes_nothing(study, browser, Rater.objects.get().access_token)


def test_a_rater_who_finished_writes_nothing_by_looking_again(make_study):
    study = make_study(n_prompts=1)
    browser = Client()
    browser.post(entry_with(study, PROLIFIC))
    answer_everything(study, browser)
    browser.post(url("rater:done", study), {"end": "finish"})

    assert_walk_writes_nothing(study, browser, Rater.objects.get().access_token)


def test_a_late_rater_of_a_full_study_writes_nothing_by_looking(make_study):
    study = make_study(n_prompts=1, ratings_per_comparison=1)
    first = Client()
    first.post(entry_with(study, PROLIFIC))
    answer_everything(study, first)
    late = Client()
    late.post(url("rater:study-entry", study))
    token = Rater.objects.exclude(external_id=PROLIFIC["PROLIFIC_PID"]).get().access_token

    visited = assert_walk_writes_nothing(study, late, token)

    # The rating page was looked at (the finish page, or, once the walk's Prolific link resumed the first rater, who
    # was recorded complete by their last answer, a redirect to theirs), and nothing was written.
    assert url("rater:rate", study) in [path for path, _ in visited]


def test_a_rater_who_stopped_early_writes_nothing_by_looking_again(make_study):
    study = make_study(n_prompts=2)
    browser = Client()
    browser.post(entry_with(study, PROLIFIC))
    browser.get(url("rater:rate", study))
    browser.post(url("rater:done", study), {"end": "stop"})
    assert Rater.objects.get().finished_at is not None

    assert_walk_writes_nothing(study, browser, Rater.objects.get().access_token)


def test_the_ends_of_a_raters_work_are_not_reachable_by_get(make_study):
    study = make_study(n_prompts=2)
    browser = Client()
    browser.post(url("rater:study-entry", study))
    browser.get(url("rater:rate", study))
    before = studies_rows()

    page = browser.get(url("rater:done", study) + "?end=stop")

    assert page.status_code == 200 and 'value="stop"' in page.content.decode()  # a button, pressed or not
    assert changed_tables(before, studies_rows()) == []
