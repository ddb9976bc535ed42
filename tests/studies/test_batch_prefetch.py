"""A rater's next batch is served once the response showing the last item they hold has been sent.

The answer that shows a rater the last item of their batch flags it (SubmitOutcome.refill_due); the API runs
serving.rater_batch_prefetch after its response (ResponseThen: the server calls close() once the body is written,
Django's test client too), so answering that item finds the next one waiting and is one statement again. Nothing is
served twice: the prefetch takes the rater's lock and does nothing when they already hold more than one item.
"""

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from rest_framework.test import APIClient

from drawbench.studies import sql
from drawbench.studies.apis import ResponseThen
from drawbench.studies.models import Assignment, Comparison, Judgment
from drawbench.studies.services import serving
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater
from drawbench.studies.services.studies import study_close
from tests.studies.conftest import pending_keys, rater_client

pytestmark = pytest.mark.django_db

ANSWERS = {"fidelity": "left", "alignment": "tie"}


def start(study) -> tuple:
    """A new rater of the study on the API: the rater, their client and the key of their first item."""
    rater = rater_create(study=study)
    client = rater_client(rater)
    # Serving is a POST (a rater's client makes it after starting); reading the item a GET.
    served = client.post(f"/api/rater/{study.rater_token}/assignment/").json()["assignment"]["key"]
    assert client.get(f"/api/rater/{study.rater_token}/assignment/").json()["assignment"]["key"] == served
    return rater, client, served


def answer_items(rater, item, n: int):
    """Answer n items through the service, each serving the next; the last one served."""
    for _ in range(n):
        item = assignment_submit(
            rater=rater, key=item.key, answers=ANSWERS, response_time_ms=900, serve_next=True
        ).next_assignment
    return item


def answer(client: APIClient, study, key: str):
    response = client.post(
        f"/api/rater/{study.rater_token}/answers/",
        {"key": key, "answers": ANSWERS, "response_time_ms": 900},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["next"]["assignment"]["key"]


@override_settings(DRAWBENCH_RATER_BATCH=3)
def test_the_next_batch_is_waiting_when_the_last_item_is_answered(on_postgresql, make_study):
    study = make_study(n_prompts=9)
    rater, client, first = start(study)
    batch = pending_keys(rater)
    assert batch[0] == first and len(batch) == 3

    second = answer(client, study, first)
    assert second == batch[1] and pending_keys(rater) == batch[1:]  # two held: nothing served ahead yet

    third = answer(client, study, second)
    # The response showed the last item of the batch; once it was sent, the next batch was served behind it.
    assert third == batch[2]
    queue = pending_keys(rater)
    assert queue[0] == third and len(queue) == 4 and not set(queue[1:]) & set(batch)

    with CaptureQueriesContext(connection) as queries:
        fourth = answer(client, study, third)
    assert fourth == queue[1]
    # Answering the last item of a batch claimed nothing: the one-statement answer found the next item waiting.
    assert [q["sql"][:4] for q in queries] == ["WITH"]
    assert Judgment.objects.filter(rater=rater).count() == 2 * 3
    assert sum(Comparison.objects.filter(study=study).values_list("n_assigned", flat=True)) == 6


@override_settings(DRAWBENCH_RATER_BATCH=3)
def test_a_prefetch_after_the_batch_was_refilled_serves_nothing(make_study):
    study = make_study(n_prompts=9)
    rater = rater_create(study=study)
    answer_items(rater, assignment_next_for_rater(rater=rater), 3)
    # The rater answered the last item before the prefetch ran: that answer served the next batch itself.
    assert len(pending_keys(rater)) == 3

    assert serving.rater_batch_prefetch(rater=rater) == []
    assert len(pending_keys(rater)) == 3 and Assignment.objects.filter(rater=rater).count() == 6


@override_settings(DRAWBENCH_RATER_BATCH=3)
def test_a_prefetch_keeps_to_the_rater_cap_and_to_the_study_being_open(make_study):
    study = make_study(n_prompts=9, max_comparisons_per_rater=4)
    rater = rater_create(study=study)
    item = answer_items(rater, assignment_next_for_rater(rater=rater), 2)

    served = serving.rater_batch_prefetch(rater=rater)

    assert len(served) == 1  # 3 served before, cap 4
    assert serving.rater_batch_prefetch(rater=rater) == []  # holds two now
    other = rater_create(study=study)
    assignment_next_for_rater(rater=other)
    Assignment.objects.filter(rater=other).exclude(key=pending_keys(other)[-1]).update(completed_at=item.served_at)
    study_close(study=study)
    assert serving.rater_batch_prefetch(rater=other) == []


@override_settings(DRAWBENCH_RATER_BATCH=1)
def test_one_item_at_a_time_serves_nothing_ahead(on_postgresql, make_study):
    study = make_study(n_prompts=4)
    rater, client, key = start(study)

    for _ in range(2):
        key = answer(client, study, key)
        assert pending_keys(rater) == [key]


def test_work_after_a_response_runs_once_it_is_closed_and_a_failure_is_logged(caplog):
    ran = []
    response = ResponseThen({"ok": True}, then=lambda: ran.append(1))
    assert ran == []
    response.close()
    assert ran == [1]

    def fail():
        raise RuntimeError("database went away")

    with caplog.at_level(logging.ERROR, logger="drawbench.studies.apis"):
        ResponseThen({"ok": True}, then=fail).close()
    assert "Work after a response failed" in caplog.text and "database went away" in caplog.text


def test_the_pending_count_stops_where_it_is_told(make_study):
    study = make_study(n_prompts=5)
    rater = rater_create(study=study)
    assignment_next_for_rater(rater=rater)
    assert [sql.pending_count(rater_id=rater.pk, up_to=n) for n in (1, 2, 9)] == [1, 2, 5]


@override_settings(DRAWBENCH_RATER_BATCH=6, DRAWBENCH_RATER_STAGGER=True)
def test_first_batches_have_staggered_sizes_and_later_ones_are_whole(make_study):
    study = make_study(n_prompts=30, ratings_per_comparison=40)
    raters = [rater_create(study=study) for _ in range(24)]
    first_sizes = []
    for rater in raters:
        assignment_next_for_rater(rater=rater)
        first_sizes.append(len(pending_keys(rater)))
    # Uniform over 1..6: 24 raters show several sizes (fewer than three has a chance below 1e-10), none out of range.
    assert set(first_sizes) <= set(range(1, 7)) and len(set(first_sizes)) >= 3

    rater = raters[first_sizes.index(min(first_sizes))]
    answer_items(rater, Assignment.objects.get(key=pending_keys(rater)[0]), min(first_sizes))
    # Once they have answered anything, a batch is whole.
    assert len(pending_keys(rater)) == 6
