"""A double click, a retried request or two tabs never make two judgments, also when the requests race (PostgreSQL,
one thread and connection per request)."""

import threading

import pytest
from django.conf import settings
from django.db import connection

from drawbench.studies.models import Assignment, Judgment
from drawbench.studies.services import answering, errors
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def race(*calls):
    """Run the calls at the same moment, each in its own thread; their results (or the exceptions they raised)."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_the_same_answer_sent_four_times_at_once_is_recorded_once(on_postgresql, make_study):
    study = make_study(n_prompts=2)
    rater = rater_create(study=study)
    key = assignment_next_for_rater(rater=rater).key
    answers = {"fidelity": "left", "alignment": "right"}

    outcomes = race(*[lambda: assignment_submit(rater=rater, key=key, answers=answers, response_time_ms=900)] * 4)

    assert sorted(o.created for o in outcomes) == [False, False, False, True]
    assert Judgment.objects.count() == 2
    assert all(
        o.judgments and {j.pk for j in o.judgments} == set(Judgment.objects.values_list("pk", flat=True))
        for o in outcomes
    )


def test_two_different_answers_at_once_keep_the_first_and_refuse_the_other(on_postgresql, make_study):
    study = make_study(n_prompts=2)
    rater = rater_create(study=study)
    key = assignment_next_for_rater(rater=rater).key

    outcomes = race(
        lambda: assignment_submit(
            rater=rater, key=key, answers={"fidelity": "left", "alignment": "left"}, response_time_ms=9
        ),
        lambda: assignment_submit(
            rater=rater, key=key, answers={"fidelity": "tie", "alignment": "tie"}, response_time_ms=9
        ),
    )

    recorded = [o for o in outcomes if isinstance(o, answering.SubmitOutcome)]
    refused = [o for o in outcomes if isinstance(o, errors.AnswerConflict)]
    assert len(recorded) == len(refused) == 1
    assert sorted(Judgment.objects.values_list("pk", flat=True)) == sorted(j.pk for j in recorded[0].judgments)


def test_two_tabs_opening_at_once_are_shown_the_same_item(on_postgresql, make_study):
    study = make_study(n_prompts=4)
    rater = rater_create(study=study)

    shown = race(*[lambda: assignment_next_for_rater(rater=rater)] * 3)

    assert len({assignment.pk for assignment in shown}) == 1
    # One batch served, not one per tab.
    assert Assignment.objects.filter(rater=rater).count() == min(settings.DRAWBENCH_RATER_BATCH, 4)
    assert sum(study.comparisons.values_list("n_assigned", flat=True)) == min(settings.DRAWBENCH_RATER_BATCH, 4)
