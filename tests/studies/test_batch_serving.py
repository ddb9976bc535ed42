"""Raters are served their items a batch at a time, and the answer path's common case is one statement.

A batch takes one slot of each of several comparisons at once (the claim costs more than an answer); the items wait
in the rater's queue, shown oldest first, each lease renewed when it is shown. Answering a comparison while the
next item is a served comparison is one SQL statement on PostgreSQL (sql.answer_and_next); everything else (a
control item next, a reclaimed item, a replay, bad input, SQLite) takes the general path, which has every rule.
"""

import random
from datetime import timedelta

import pytest
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from drawbench.studies import authentication, sql
from drawbench.studies.apis import JSONNegotiation
from drawbench.studies.models import Assignment, Comparison, DisplayImage, Judgment, Rater, Study
from drawbench.studies.selectors import assignment_pending_for_rater, rater_progress
from drawbench.studies.services import answering, errors, serving, studies
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater
from tests.studies.conftest import pending_keys

pytestmark = pytest.mark.django_db

ANSWERS = {"fidelity": "left", "alignment": "tie"}


def held_slots(study) -> int:
    return sum(Comparison.objects.filter(study=study).values_list("n_assigned", flat=True))


@override_settings(DRAWBENCH_RATER_BATCH=3)
def test_a_rater_is_served_a_batch_and_its_items_in_order_before_the_next_batch(make_study):
    study = make_study(n_prompts=7)
    rater = rater_create(study=study)

    first = assignment_next_for_rater(rater=rater, rng=random.Random(0))

    queue = pending_keys(rater)
    assert len(queue) == 3 and queue[0] == first.key and held_slots(study) == 3
    shown = [first.key]
    item = first
    for _ in range(6):
        outcome = assignment_submit(
            rater=rater, key=item.key, answers=ANSWERS, response_time_ms=900, serve_next=True, rng=random.Random(1)
        )
        item = outcome.next_assignment
        shown.append(item.key)
        # Nothing more is claimed until the batch is used up: then the next batch, three more.
        assert held_slots(study) == min(7, 3 * ((len(shown) + 2) // 3))
    assert shown[:3] == queue
    assert len(set(shown)) == 7
    assert Judgment.objects.filter(rater=rater).count() == 2 * 6


@override_settings(DRAWBENCH_RATER_BATCH=8)
def test_the_batch_stops_at_the_rater_cap(make_study):
    study = make_study(n_prompts=6, max_comparisons_per_rater=2)
    rater = rater_create(study=study)

    assignment_next_for_rater(rater=rater)

    assert len(pending_keys(rater)) == 2 and held_slots(study) == 2


@override_settings(DRAWBENCH_RATER_BATCH=4)
def test_a_batch_puts_silent_gold_trials_between_comparisons_within_the_gold_share(make_study):
    study = make_study(n_prompts=40, gold_rate=1.0)
    trials = study.gold_trials.count()
    rater = rater_create(study=study)

    kinds = []
    item = assignment_next_for_rater(rater=rater, rng=random.Random(0))
    while item is not None and len(kinds) < 2 * trials + 4:
        kinds.append(item.kind)
        outcome = assignment_submit(
            rater=rater, key=item.key, answers=ANSWERS, response_time_ms=900, serve_next=True, rng=random.Random(1)
        )
        item = outcome.next_assignment

    # At rate 1 a gold trial comes before each comparison (never two in a row) until every trial has been shown.
    assert kinds[: 2 * trials] == ["gold", "comparison"] * trials
    assert kinds[2 * trials :] == ["comparison"] * 4
    assert len(set(Assignment.objects.filter(rater=rater, kind="gold").values_list("gold_trial", flat=True))) == trials


@pytest.mark.parametrize("seed", range(4))
@override_settings(DRAWBENCH_RATER_BATCH=3)
def test_the_one_statement_answer_records_what_the_general_path_records(on_postgresql, make_study, seed):
    study = make_study(n_prompts=4)
    rater = rater_create(study=study)
    rater.study = study
    item = assignment_next_for_rater(rater=rater, rng=random.Random(seed))
    following, after = pending_keys(rater)[1:3]
    # The next item's lease has less than half of the study's timeout left: it is renewed when shown.
    lease = timezone.now() + timedelta(seconds=60)
    Assignment.objects.filter(key=following).update(expires_at=lease)
    answers = {"fidelity": random.Random(seed).choice(["left", "right", "tie"]), "alignment": "right"}

    with CaptureQueriesContext(connection) as queries:
        outcome = assignment_submit(rater=rater, key=item.key, answers=answers, response_time_ms=1234, serve_next=True)

    assert len(queries) == 1
    assert outcome.created and outcome.next_assignment.key == following
    shown_next = Assignment.objects.get(key=following)
    assert shown_next.expires_at >= lease + timedelta(seconds=study.assignment_timeout_s - 120)
    stored = list(Judgment.objects.filter(assignment__key=item.key).order_by("id"))
    assert [j.pk for j in outcome.judgments] == [j.pk for j in stored]
    left_is_a = item.left_model_id == item.comparison.model_a_id
    assert [(j.question, j.choice, j.response_time_ms) for j in stored] == [
        (q, answering._to_model_space(answers[q], left_is_a=left_is_a), 1234) for q in study.questions
    ]
    assert all(
        (j.left_model_id, j.left_sample_ids, j.right_sample_ids)
        == (item.left_model_id, item.left_sample_ids, item.right_sample_ids)
        for j in stored
    )
    assert outcome.progress == rater_progress(rater=rater)
    # What the rater is shown next is what the general path shows.
    assert outcome.next_assignment.comparison.prompt.text == shown_next.comparison.prompt.text
    assert outcome.next_assignment.image_names == dict(
        DisplayImage.objects.filter(
            study=study, sample_id__in=[*shown_next.left_sample_ids, *shown_next.right_sample_ids]
        ).values_list("sample_id", "name")
    )
    # The same answer again is a replay (general path), different answers a conflict.
    again = assignment_submit(rater=rater, key=item.key, answers=answers, response_time_ms=1, serve_next=True)
    assert not again.created
    with pytest.raises(errors.AnswerConflict):
        assignment_submit(
            rater=rater, key=item.key, answers={**answers, "alignment": "left"}, response_time_ms=1, serve_next=True
        )
    assert Judgment.objects.filter(assignment__key=item.key).count() == 2
    # One with more than half its lease left keeps it (no write).
    fresh_lease = Assignment.objects.get(key=after).expires_at
    assignment_submit(rater=rater, key=following, answers=answers, response_time_ms=1234, serve_next=True)
    assert Assignment.objects.get(key=after).expires_at == fresh_lease


@override_settings(DRAWBENCH_RATER_BATCH=2)
def test_a_control_item_next_in_the_queue_is_served_by_the_general_path(on_postgresql, make_study):
    study = make_study(n_prompts=3, gold_rate=0.01)
    rater = rater_create(study=study)
    rater.study = study
    item = assignment_next_for_rater(rater=rater, rng=random.Random(0))
    # Replace the second item of the batch with a silent gold trial.
    Assignment.objects.filter(rater=rater).exclude(pk=item.pk).update(released_at=timezone.now())
    trial = study.gold_trials.first()
    gold = serving._assignment_build_control(
        rater=rater, trial=trial, kind=Assignment.Kind.GOLD, rng=random.Random(0), now=timezone.now()
    )
    sql.assignments_insert(assignments=[gold])

    outcome = assignment_submit(rater=rater, key=item.key, answers=ANSWERS, response_time_ms=900, serve_next=True)

    assert outcome.created and outcome.next_assignment.pk == gold.pk
    assert Judgment.objects.filter(assignment=item).count() == 2


@override_settings(DRAWBENCH_RATER_BATCH=2)
def test_a_next_item_reclaimed_before_it_is_shown_is_not_shown(on_postgresql, make_study):
    study = make_study(n_prompts=4, ratings_per_comparison=1)
    rater = rater_create(study=study)
    rater.study = study
    item = assignment_next_for_rater(rater=rater)
    following = Assignment.objects.get(key=pending_keys(rater)[1])
    # Its lease ran out and the sweep gave its slot back.
    Assignment.objects.filter(pk=following.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    serving.assignments_release_expired(study=study)

    outcome = assignment_submit(rater=rater, key=item.key, answers=ANSWERS, response_time_ms=900, serve_next=True)

    assert outcome.created and outcome.next_assignment.pk not in (item.pk, following.pk)
    assert outcome.next_assignment.comparison_id != following.comparison_id


def test_an_answer_to_a_reclaimed_item_takes_the_general_path_and_its_slot_again(on_postgresql, make_study):
    study = make_study(n_prompts=2, ratings_per_comparison=1)
    rater = rater_create(study=study)
    rater.study = study
    item = assignment_next_for_rater(rater=rater)
    Assignment.objects.filter(rater=rater).update(expires_at=timezone.now() - timedelta(seconds=1))
    serving.assignments_release_expired(study=study)
    assert held_slots(study) == 0

    outcome = assignment_submit(rater=rater, key=item.key, answers=ANSWERS, response_time_ms=900, serve_next=True)

    assert outcome.created and Comparison.objects.get(pk=item.comparison_id).n_assigned == 1
    assert Judgment.objects.filter(assignment=item).count() == 2


def test_the_pending_probe_agrees_with_the_pending_item(make_study):
    study = make_study(n_prompts=2)
    rater = rater_create(study=study)
    assert sql.pending_count(rater_id=rater.pk) == 0

    item = assignment_next_for_rater(rater=rater)

    assert sql.pending_count(rater_id=rater.pk) == 1
    assert assignment_pending_for_rater(rater=rater).pk == item.pk


def test_a_remembered_token_is_reused_and_a_changed_study_is_read_afresh(on_postgresql, make_study):
    study = make_study(n_prompts=3)
    rater = rater_create(study=study)
    rater_for_token = authentication.rater_for_token
    first = rater_for_token(rater.access_token)

    with CaptureQueriesContext(connection) as queries:
        again = rater_for_token(rater.access_token)
    assert len(queries) == 0 and (again.pk, again.study_id, again.study_version) == (
        rater.pk, study.pk, first.study_version,
    )  # fmt: skip

    item = assignment_next_for_rater(rater=rater)
    # The study changes after the token was looked up: the one-statement answer declines, the general path (which
    # reads the study afresh) records the answer, with the study's new settings.
    studies.study_close(study=study)
    with pytest.raises(errors.StudyNotOpen):
        assignment_submit(rater=again, key=item.key, answers=ANSWERS, response_time_ms=900, serve_next=True)
    assert not Judgment.objects.filter(assignment=item).exists()
    # A rater deleted after their token was looked up is refused by the API as an unknown token.
    Study.objects.filter(pk=study.pk).update(status=Study.Status.OPEN)
    gone = rater_create(study=study)
    rater_for_token(gone.access_token)
    Rater.objects.filter(pk=gone.pk).delete()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Rater {gone.access_token}")
    response = client.get(f"/api/rater/{study.rater_token}/assignment/")
    assert response.status_code == 401


@override_settings(DRAWBENCH_RATER_BATCH=3)
def test_the_answer_count_on_the_rater_row_is_the_number_of_items_answered(make_study):
    study = make_study(n_prompts=6, practice_items=1, gold_rate=0.3)
    rater = rater_create(study=study)
    rater.study = study
    rng = random.Random(3)
    ties = {"fidelity": "tie", "alignment": "tie"}

    item = assignment_next_for_rater(rater=rater, rng=rng)
    while item is not None:
        outcome = assignment_submit(
            rater=rater, key=item.key, answers=ties, response_time_ms=900, serve_next=True, rng=rng
        )
        # A retry records nothing and counts nothing.
        assignment_submit(rater=rater, key=item.key, answers=ties, response_time_ms=900, serve_next=True, rng=rng)
        item = outcome.next_assignment

    answered = Assignment.objects.filter(rater=rater, completed_at__isnull=False).exclude(kind="practice")
    assert answered.filter(kind="gold").exists() and answered.filter(kind="comparison").count() == 6
    assert Rater.objects.get(pk=rater.pk).n_answered == answered.count()
    assert rater_progress(rater=rater).done == answered.count()


def test_the_one_statement_answers_judgments_are_built_once_when_first_read():
    built = []
    deferred = answering.Deferred(lambda: built.append(1) or ["fidelity", "alignment"])
    assert built == []

    assert list(deferred) == ["fidelity", "alignment"] and len(deferred) == 2 and deferred[1] == "alignment"
    assert built == [1]


@pytest.mark.parametrize(
    ("accept", "query"),
    [
        ("*/*", ""), ("application/json", ""), ("text/html", ""), ("application/json; indent=4", ""),
        ("*/*", "format=json"), ("*/*", "format=api"), ("text/html, */*;q=0.8", ""),
    ],
)  # fmt: skip
def test_the_rater_apis_negotiation_agrees_with_drfs(accept, query):
    request = Request(APIRequestFactory().get(f"/x/?{query}", HTTP_ACCEPT=accept))
    outcomes = []
    for negotiation in (JSONNegotiation(), DefaultContentNegotiation()):
        try:
            renderer, media_type = negotiation.select_renderer(request, [JSONRenderer()])
            outcomes.append((type(renderer), media_type))
        except (NotAcceptable, Http404) as exc:
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]
