"""Holds, gold share and the server's clock: what a squatter, a late rater and a bot meet on the rater path.

Provisional first items are on here, as in a deployment (the test settings turn them off for the tests that count
slots from a rater's first item).
"""

import itertools
import random
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from drawbench.studies.models import Assignment, Comparison, Judgment, Rater, RaterFlag
from drawbench.studies.services import answering, errors, serving
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_create, rater_flags_refresh
from drawbench.studies.services.serving import assignment_next_for_rater

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("provisional_first_items")]

ANSWERS = {"fidelity": "left", "alignment": "tie"}


@pytest.fixture
def provisional_first_items():
    with override_settings(DRAWBENCH_RATER_FIRST_ITEM_PROVISIONAL=True):
        yield


def api_start(study, address: str) -> APIClient:
    """A visitor from `address` who opens the study and starts, through the API."""
    response = APIClient(REMOTE_ADDR=address).post(
        reverse("api-rater-start", args=[study.rater_token]), {}, format="json"
    )
    assert response.status_code == 201, response.content
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION=f"Rater {response.json()['rater_token']}")
    return client


def current_item(client: APIClient, study) -> dict:
    return client.get(reverse("api-rater-assignment", args=[study.rater_token])).json()


def answer_all(client: APIClient, study, item: dict | None, *, limit: int = 1000) -> int:
    answered = 0
    while item is not None and answered < limit:
        body = {"key": item["key"], "answers": ANSWERS, "response_time_ms": 3000}
        response = client.post(reverse("api-rater-answer", args=[study.rater_token]), body, format="json")
        assert response.status_code == 201, response.content
        answered += 1
        item = response.json()["next"]["assignment"]
    return answered


def slots_match_assignments(study) -> bool:
    """Every comparison's slot counter equals its assignments that hold a slot (answered, or live and holding)."""
    for comparison in Comparison.objects.filter(study=study):
        holding = Assignment.objects.filter(comparison=comparison, released_at__isnull=True, holds_slot=True).count()
        if comparison.n_assigned != holding:
            return False
    return True


def test_visitors_who_start_and_leave_hold_nothing_an_honest_rater_needs(make_study):
    study = make_study(n_prompts=6, ratings_per_comparison=1)
    squatters = [api_start(study, f"10.9.0.{i}") for i in range(40)]
    for squatter in squatters:
        assert current_item(squatter, study)["assignment"] is not None

    honest = api_start(study, "192.0.2.7")
    answered = answer_all(honest, study, current_item(honest, study)["assignment"])

    assert answered == 6, "the honest rater got every comparison although 40 visitors came first"
    assert Judgment.objects.values("comparison").distinct().count() == 6
    assert set(Comparison.objects.filter(study=study).values_list("n_assigned", flat=True)) == {1}
    assert slots_match_assignments(study)
    completion = honest.get(reverse("api-rater-completion", args=[study.rater_token])).json()
    assert completion["completed"] and completion["completion"]["completion_code"] == study.completion_code


def test_a_first_item_takes_its_slot_when_answered_and_is_refused_if_the_comparison_filled_meanwhile(make_study):
    study = make_study(n_prompts=1, ratings_per_comparison=1)
    late, early = rater_create(study=study), rater_create(study=study)
    first_of_late = assignment_next_for_rater(rater=late)
    assert not first_of_late.holds_slot and Comparison.objects.get().n_assigned == 0

    first_of_early = assignment_next_for_rater(rater=early)
    assignment_submit(rater=early, key=first_of_early.key, answers=ANSWERS, response_time_ms=3000)
    assert Comparison.objects.get().n_assigned == 1

    with pytest.raises(errors.AssignmentExpired):
        assignment_submit(rater=late, key=first_of_late.key, answers=ANSWERS, response_time_ms=3000)
    assert Judgment.objects.filter(rater=late).count() == 0
    assert slots_match_assignments(study)


def test_after_the_first_answer_a_rater_holds_a_batch_of_real_slots(make_study):
    study = make_study(n_prompts=8, ratings_per_comparison=2)
    rater = rater_create(study=study)
    first = assignment_next_for_rater(rater=rater)

    outcome = assignment_submit(rater=rater, key=first.key, answers=ANSWERS, response_time_ms=3000, serve_next=True)

    assert outcome.next_assignment is not None and outcome.next_assignment.holds_slot
    held = Assignment.objects.filter(rater=rater, holds_slot=True, completed_at__isnull=True).count()
    assert held >= 1
    assert slots_match_assignments(study)


@pytest.mark.parametrize("gold_rate", [0.1, 0.3, 0.5])
def test_gold_never_goes_over_its_share_at_any_point_of_a_long_run(make_study, gold_rate):
    study = make_study(n_prompts=40, gold_rate=gold_rate, practice_items=1)
    rater = rater_create(study=study)
    kinds = []
    item = assignment_next_for_rater(rater=rater, rng=random.Random(3))
    while item is not None:
        if item.kind != Assignment.Kind.PRACTICE:
            kinds.append(item.kind)
        outcome = assignment_submit(
            rater=rater, key=item.key, answers={"fidelity": "tie", "alignment": "tie"}, response_time_ms=3000,
            serve_next=True, rng=random.Random(len(kinds)),
        )  # fmt: skip
        item = outcome.next_assignment

    assert kinds.count("comparison") == 40
    for n in range(1, len(kinds) + 1):
        assert kinds[:n].count("gold") <= gold_rate * n + 1, (n, kinds[:n])
    assert kinds[-1] == "comparison"


def test_a_late_rater_with_no_real_work_left_is_fed_no_gold_and_gets_no_code(make_study):
    study = make_study(n_prompts=5, ratings_per_comparison=1, gold_rate=0.3)
    early = rater_create(study=study)
    item = assignment_next_for_rater(rater=early)
    while item is not None:
        item = assignment_submit(
            rater=early, key=item.key, answers=ANSWERS, response_time_ms=3000, serve_next=True
        ).next_assignment
    assert Judgment.objects.values("comparison").distinct().count() == 5

    late = api_start(study, "192.0.2.99")
    payload = current_item(late, study)

    assert payload["assignment"] is None
    late_rater = Rater.objects.exclude(pk=early.pk).get()
    assert not Assignment.objects.filter(rater=late_rater).exists()
    completion = late.get(reverse("api-rater-completion", args=[study.rater_token])).json()
    assert completion["completion"] is None or not completion["completion"].get("completion_code")


def test_a_late_rater_who_finds_a_few_comparisons_left_sees_gold_only_within_its_share(make_study):
    study = make_study(n_prompts=30, ratings_per_comparison=1, gold_rate=0.3)
    early = rater_create(study=study)
    item = assignment_next_for_rater(rater=early)
    for _ in range(26):
        item = assignment_submit(
            rater=early, key=item.key, answers=ANSWERS, response_time_ms=3000, serve_next=True
        ).next_assignment
    # The early rater leaves with a batch in hand; it is reclaimed.
    serving.assignments_release_expired(study=study, now=timezone.now() + timedelta(days=1))

    left = 30 - Judgment.objects.filter(rater=early).values("comparison").distinct().count()
    assert 0 < left < 15
    late = rater_create(study=study)
    kinds = []
    item = assignment_next_for_rater(rater=late)
    while item is not None:
        kinds.append(item.kind)
        answers = {"fidelity": "tie", "alignment": "tie"}
        item = assignment_submit(
            rater=late, key=item.key, answers=answers, response_time_ms=3000, serve_next=True
        ).next_assignment

    assert kinds.count("comparison") == left
    assert kinds.count("gold") <= 0.3 * len(kinds) + 1


def clock_at(seconds_per_read: float):
    start, reads = timezone.now(), itertools.count()
    return lambda: start + timedelta(seconds=seconds_per_read * next(reads))


@pytest.mark.parametrize(("seconds_per_read", "flagged"), [(0.04, True), (4.0, False)])
def test_too_fast_is_decided_by_the_server_clock_whatever_the_client_claims(
    make_study, monkeypatch, seconds_per_read, flagged
):
    study = make_study(n_prompts=8, min_response_time_ms=1000)
    monkeypatch.setattr(serving, "rater_clock", clock_at(seconds_per_read))
    client = api_start(study, "192.0.2.40")

    # The bot claims 4 s each time; the clock moves 40 ms (or, for a careful rater, 4 s) per reading.
    answered = answer_all(client, study, current_item(client, study)["assignment"])
    rater = Rater.objects.get()
    rater_flags_refresh(study=study, rater_ids=[rater.pk])

    assert answered == 8
    assert set(Judgment.objects.values_list("response_time_ms", flat=True)) == {3000}
    assert RaterFlag.objects.filter(rater=rater, reason=RaterFlag.Reason.TOO_FAST).exists() is flagged
    server_ms = [(a.completed_at - a.shown_at).total_seconds() * 1000 for a in Assignment.objects.filter(rater=rater)]
    assert all(ms < 1000 for ms in server_ms) is flagged


def test_the_one_statement_answer_and_the_general_path_agree_on_the_shown_time(make_study, monkeypatch):
    study = make_study(n_prompts=6)
    monkeypatch.setattr(serving, "rater_clock", clock_at(2.0))
    rater = rater_create(study=study)
    item = assignment_next_for_rater(rater=rater)
    previous_answer = None
    while item is not None:
        outcome = assignment_submit(rater=rater, key=item.key, answers=ANSWERS, response_time_ms=10, serve_next=True)
        stored = Assignment.objects.get(pk=item.pk)
        expected = max(filter(None, (stored.served_at, previous_answer)))
        assert stored.shown_at == expected
        previous_answer = stored.completed_at
        item = outcome.next_assignment
    assert Rater.objects.get().last_answered_at == previous_answer


def test_the_answer_check_refuses_a_huge_number_with_a_message():
    with pytest.raises(ValidationError) as caught:
        answering.answer_input({"key": "k", "answers": ANSWERS, "response_time_ms": 10**5000})
    assert "response_time_ms" in caught.value.message_dict
