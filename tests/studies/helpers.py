"""Helpers that only tests use: serve one chosen comparison, answer one assignment, and the next comparison a
rater would get (a read, as the claim statement decides it)."""

import random
from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from drawbench.studies import sql
from drawbench.studies.models import Assignment, Comparison, Judgment, Rater, Study
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.errors import ERROR_STUDY_NOT_OPEN, StudyNotOpen
from drawbench.studies.services.serving import assignment_build, comparison_slot_take, display_rng

ERROR_COMPARISON_OTHER_STUDY = "This comparison belongs to another study than the rater's."
ERROR_COMPARISON_FULL = "Comparison {comparison} already has its {n} raters."


@transaction.atomic
def assignment_create(*, rater: Rater, comparison: Comparison, rng: random.Random | None = None) -> Assignment:
    """Serve this comparison to a rater, taking one of its slots: draw the left model and the images shown.

    Refused when the comparison already has ratings_per_comparison raters (holding or done).
    """
    rng = rng or display_rng()
    study = Study.objects.get(pk=rater.study_id)
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(ERROR_STUDY_NOT_OPEN)
    if comparison.study_id != rater.study_id:
        raise ValidationError(ERROR_COMPARISON_OTHER_STUDY)
    if not comparison_slot_take(comparison_id=comparison.pk, study=study):
        raise ValidationError(ERROR_COMPARISON_FULL.format(comparison=comparison.pk, n=study.ratings_per_comparison))
    assignment = assignment_build(rater=rater, study=study, comparison=comparison, rng=rng, now=timezone.now())
    sql.assignments_insert(assignments=[assignment])
    return assignment


def judgment_submit(*, assignment: Assignment, answers: Mapping[str, str], response_time_ms: int) -> list[Judgment]:
    """Record a rater's answers to a comparison: one Judgment per question, all or nothing, at most once.

    See assignment_submit, which this calls: the same answers sent again return the judgments recorded the first
    time; different ones raise AnswerConflict (a ValidationError).
    """
    outcome = assignment_submit(
        rater=assignment.rater, key=assignment.key, answers=answers, response_time_ms=response_time_ms
    )
    return outcome.judgments


def rater_comparisons_held(*, rater: Rater) -> int:
    """Comparisons the rater holds or has answered (what max_comparisons_per_rater caps); reclaimed ones don't count."""
    return Assignment.objects.filter(rater=rater, kind=Assignment.Kind.COMPARISON, released_at__isnull=True).count()


def comparison_next_for_rater(*, rater: Rater) -> Comparison | None:
    """The comparison a rater would be served next, or None when they are done (a read: serving takes the slot).

    Among the study's comparisons the rater has not been served and that fewer than ratings_per_comparison raters
    hold or have answered: the fewest first (so raters arriving together spread out), ties at random. None once the
    rater holds max_comparisons_per_rater comparisons. services.assignment_next_for_rater takes the slot with the
    same rule in one atomic statement.
    """
    study = rater.study
    if study.max_comparisons_per_rater is not None:
        if rater_comparisons_held(rater=rater) >= study.max_comparisons_per_rater:
            return None
    return (
        Comparison.objects.filter(study=study, n_assigned__lt=study.ratings_per_comparison)
        .filter(~Exists(Assignment.objects.filter(rater=rater, comparison=OuterRef("pk"))))
        .order_by("n_assigned", "?")
        .select_related("prompt", "model_a", "model_b")
        .first()
    )
