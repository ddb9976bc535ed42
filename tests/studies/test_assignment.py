"""Serving comparisons: target raters per comparison, per-rater caps, never twice, abandoned items reclaimed."""

import random
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.utils import timezone

from drawbench.studies.models import Assignment, Comparison, Judgment
from drawbench.studies.services import errors
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater, assignments_release_expired
from tests.studies import helpers
from tests.studies.helpers import assignment_create

pytestmark = pytest.mark.django_db

ANSWERS = {"fidelity": "left", "alignment": "tie"}


def answer_all(rater) -> int:
    """Serve and answer until the rater has nothing left; how many they answered."""
    answered = 0
    while (assignment := assignment_next_for_rater(rater=rater, rng=random.Random(answered))) is not None:
        assignment_submit(rater=rater, key=assignment.key, answers=ANSWERS, response_time_ms=1500)
        answered += 1
    return answered


def expire(assignment: Assignment) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def live_and_answered(comparison: Comparison) -> int:
    return comparison.assignments.filter(released_at__isnull=True).count()


def test_each_comparison_gets_exactly_its_target_of_distinct_raters(make_study):
    study = make_study(n_prompts=3, ratings_per_comparison=2)

    answered = [answer_all(rater_create(study=study)) for _ in range(4)]

    assert answered == [3, 3, 0, 0]
    per_comparison = Comparison.objects.filter(study=study).annotate(
        raters=Count("judgments__rater", distinct=True),
        done=Count("assignments", distinct=True, filter=Q(assignments__completed_at__isnull=False)),
    )
    assert [(c.raters, c.done, c.n_assigned) for c in per_comparison] == [(2, 2, 2)] * 3


def test_assignment_create_refuses_a_comparison_that_has_its_raters(make_study):
    study = make_study(n_prompts=1, ratings_per_comparison=1)
    comparison = study.comparisons.get()
    assignment_create(rater=rater_create(study=study), comparison=comparison)

    with pytest.raises(ValidationError) as caught:
        assignment_create(rater=rater_create(study=study), comparison=comparison)

    assert caught.value.messages == [helpers.ERROR_COMPARISON_FULL.format(comparison=comparison.pk, n=1)]
    assert Assignment.objects.count() == 1


def test_a_new_assignment_carries_a_lease_of_the_study_timeout(make_study):
    study = make_study(n_prompts=1, assignment_timeout_s=90)
    before = timezone.now()

    assignment = assignment_next_for_rater(rater=rater_create(study=study))

    assert before + timedelta(seconds=90) <= assignment.expires_at <= timezone.now() + timedelta(seconds=90)


def test_an_abandoned_assignment_is_reclaimed_after_the_timeout_and_served_to_another_rater(make_study):
    study = make_study(n_prompts=1, ratings_per_comparison=1)
    first, second = rater_create(study=study), rater_create(study=study)
    abandoned = assignment_next_for_rater(rater=first)
    assert assignment_next_for_rater(rater=second) is None

    expire(abandoned)
    taken_over = assignment_next_for_rater(rater=second)

    abandoned.refresh_from_db()
    assert taken_over is not None and taken_over.comparison_id == abandoned.comparison_id
    assert abandoned.released_at is not None and abandoned.completed_at is None
    assert Comparison.objects.get().n_assigned == 1


def test_a_rater_who_comes_back_before_the_sweep_keeps_their_item_with_a_new_lease(make_study):
    study = make_study(n_prompts=2)
    rater = rater_create(study=study)
    assignment = assignment_next_for_rater(rater=rater)
    served = Assignment.objects.count()
    expire(assignment)

    again = assignment_next_for_rater(rater=rater)

    assert again.pk == assignment.pk
    assert again.expires_at > timezone.now()
    assert Assignment.objects.count() == served


def test_the_sweep_releases_only_unanswered_assignments_past_their_lease(make_study):
    study = make_study(n_prompts=3)
    expired, answered_late, fresh = (assignment_next_for_rater(rater=rater_create(study=study)) for _ in range(3))
    assignment_submit(rater=answered_late.rater, key=answered_late.key, answers=ANSWERS, response_time_ms=5)
    expire(expired)
    expire(answered_late)

    released = assignments_release_expired(study=study)

    assert released == 1
    assert set(Assignment.objects.filter(released_at__isnull=False).values_list("pk", flat=True)) == {expired.pk}
    assert {c.pk: c.n_assigned for c in Comparison.objects.all()} == {
        c.pk: live_and_answered(c) for c in Comparison.objects.all()
    }
    assert fresh.released_at is None


def test_a_late_answer_to_a_reclaimed_assignment_is_kept_while_its_comparison_has_room(make_study):
    study = make_study(n_prompts=1, ratings_per_comparison=2)
    rater = rater_create(study=study)
    assignment = assignment_next_for_rater(rater=rater)
    expire(assignment)
    assignments_release_expired(study=study)

    outcome = assignment_submit(rater=rater, key=assignment.key, answers=ANSWERS, response_time_ms=700_000)

    assignment.refresh_from_db()
    assert outcome.created and len(outcome.judgments) == 2
    assert assignment.released_at is None and assignment.completed_at is not None
    assert Comparison.objects.get().n_assigned == 1


def test_a_late_answer_whose_slot_went_to_another_rater_is_refused_and_writes_nothing(make_study):
    study = make_study(n_prompts=1, ratings_per_comparison=1)
    late, other = rater_create(study=study), rater_create(study=study)
    assignment = assignment_next_for_rater(rater=late)
    expire(assignment)
    assert assignment_next_for_rater(rater=other) is not None

    with pytest.raises(errors.AssignmentExpired) as caught:
        assignment_submit(rater=late, key=assignment.key, answers=ANSWERS, response_time_ms=5)

    assert caught.value.messages == [errors.ERROR_ASSIGNMENT_EXPIRED]
    assert Judgment.objects.count() == 0
    assert Comparison.objects.get().n_assigned == 1


def test_a_reclaimed_comparison_is_never_served_again_to_the_rater_who_left_it(make_study):
    study = make_study(n_prompts=1, ratings_per_comparison=3)
    rater = rater_create(study=study)
    expire(assignment_next_for_rater(rater=rater))
    assignments_release_expired(study=study)

    assert assignment_next_for_rater(rater=rater) is None


def test_the_rater_cap_counts_held_comparisons_and_not_reclaimed_ones(make_study):
    study = make_study(n_prompts=3, max_comparisons_per_rater=1)
    rater = rater_create(study=study)
    first = assignment_next_for_rater(rater=rater)
    assignment_submit(rater=rater, key=first.key, answers=ANSWERS, response_time_ms=5)
    assert assignment_next_for_rater(rater=rater) is None

    capped = rater_create(study=study)
    expire(assignment_next_for_rater(rater=capped))
    assignments_release_expired(study=study)

    replacement = assignment_next_for_rater(rater=capped)
    assert replacement is not None and replacement.released_at is None


def test_the_counter_of_each_comparison_matches_its_live_and_answered_assignments(make_study):
    study = make_study(n_prompts=4, ratings_per_comparison=3)
    raters = [rater_create(study=study) for _ in range(5)]
    for step, rater in enumerate(raters * 3):
        assignment = assignment_next_for_rater(rater=rater, rng=random.Random(step))
        if assignment is None:
            continue
        if step % 3 == 0:
            expire(assignment)
        elif step % 3 == 1:
            assignment_submit(rater=rater, key=assignment.key, answers=ANSWERS, response_time_ms=5)
    assignments_release_expired(study=study)

    assert {c.pk: c.n_assigned for c in Comparison.objects.all()} == {
        c.pk: live_and_answered(c) for c in Comparison.objects.all()
    }
    assert all(c.n_assigned <= 3 for c in Comparison.objects.all())
