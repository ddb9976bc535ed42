"""Serving runs again where PostgreSQL broke a deadlock by aborting it: raters arriving together are served, not shown
an error, and nothing is claimed twice. Any other database error is raised at once."""

import threading

import psycopg
import pytest
from django.db import OperationalError, connection
from django.db.models import F

from drawbench.studies import sql
from drawbench.studies.models import Assignment, Comparison, Judgment
from drawbench.studies.services import answering, serving
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater, atomic_retrying_deadlocks


def _django_deadlock() -> OperationalError:
    """What Django raises for PostgreSQL's deadlock: its OperationalError, raised from psycopg's DeadlockDetected."""
    error = OperationalError("deadlock detected")
    error.__cause__ = psycopg.errors.DeadlockDetected("deadlock detected")
    return error


@pytest.mark.django_db
def test_a_claim_aborted_by_a_deadlock_is_run_again_and_serves_exactly_one_slot(make_study, monkeypatch):
    study = make_study(n_prompts=3, ratings_per_comparison=2)
    rater = rater_create(study=study)
    real_claim, calls = sql.comparisons_claim, []

    def claim(**kwargs):
        calls.append(kwargs["wait"])
        result = real_claim(**kwargs)  # rows really claimed, then the transaction aborted: all of it must roll back
        if len(calls) == 1:
            raise _django_deadlock()
        return result

    monkeypatch.setattr(sql, "comparisons_claim", claim)
    monkeypatch.setattr(serving.time, "sleep", lambda seconds: None)

    served = assignment_next_for_rater(rater=rater)

    assert served is not None and calls == [False, False]
    held = Assignment.objects.filter(rater=rater, kind=Assignment.Kind.COMPARISON)
    assert held.count() == sum(Comparison.objects.filter(study=study).values_list("n_assigned", flat=True)) >= 1
    assert sorted(held.values_list("comparison_id", flat=True)) == sorted(
        set(held.values_list("comparison_id", flat=True))
    )


@pytest.mark.django_db
def test_other_database_errors_and_a_deadlock_on_the_last_attempt_are_raised(monkeypatch):
    monkeypatch.setattr(serving.time, "sleep", lambda seconds: None)
    attempts = []

    def locked_database():
        attempts.append(1)
        raise OperationalError("database is locked")

    with pytest.raises(OperationalError, match="database is locked"):
        atomic_retrying_deadlocks(locked_database)
    assert len(attempts) == 1

    def always_deadlocked():
        attempts.append(1)
        raise _django_deadlock()

    with pytest.raises(OperationalError, match="deadlock"):
        atomic_retrying_deadlocks(always_deadlocked)
    assert len(attempts) == 1 + serving.DEADLOCK_ATTEMPTS


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_postgresql_deadlock_is_recognised_and_both_transactions_finish(on_postgresql, make_study):
    """Two transactions lock two comparisons in opposite orders: PostgreSQL aborts one (SQLSTATE 40P01, after its
    deadlock_timeout), atomic_retrying_deadlocks runs it again, and both finish with their updates applied once."""
    study = make_study(n_prompts=2)
    first, second = Comparison.objects.filter(study=study).order_by("pk").values_list("pk", flat=True)
    both_hold_one = threading.Barrier(2)
    attempts = {"forward": 0, "backward": 0}
    errors: list[BaseException] = []

    def lock_in_order(name: str, ids: tuple[int, int]) -> None:
        def work():
            attempts[name] += 1
            Comparison.objects.select_for_update().get(pk=ids[0])
            if attempts[name] == 1:
                both_hold_one.wait(timeout=30)
            Comparison.objects.select_for_update().get(pk=ids[1])
            Comparison.objects.filter(pk__in=ids).update(n_assigned=F("n_assigned") + 1)

        try:
            atomic_retrying_deadlocks(work)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=lock_in_order, args=("forward", (first, second))),
        threading.Thread(target=lock_in_order, args=("backward", (second, first))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(attempts.values()) == [1, 2]  # exactly one was aborted and ran again
    assert set(Comparison.objects.filter(study=study).values_list("n_assigned", flat=True)) == {2}


@pytest.mark.django_db
def test_an_answer_aborted_by_a_deadlock_is_recorded_once_when_run_again(make_study, monkeypatch):
    study = make_study(n_prompts=3, ratings_per_comparison=2)
    rater = rater_create(study=study)
    assignment = assignment_next_for_rater(rater=rater)
    real_submit, calls = answering._assignment_submit, []

    def submit(**kwargs):
        calls.append(1)
        result = real_submit(**kwargs)  # the judgments really written, then the transaction aborted
        if len(calls) == 1:
            raise _django_deadlock()
        return result

    monkeypatch.setattr(answering, "_assignment_submit", submit)
    monkeypatch.setattr(serving.time, "sleep", lambda seconds: None)

    outcome = answering.assignment_submit(
        rater=rater, key=assignment.key, answers={"fidelity": "left", "alignment": "tie"}, response_time_ms=2000
    )

    assert len(calls) == 2 and outcome.created
    assert Judgment.objects.filter(assignment=assignment).count() == 2
