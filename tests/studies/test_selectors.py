"""Selectors: which comparison a rater gets next, how far a study and a rater are, what a rater is shown."""

import random

import pytest
from django.urls import reverse

from drawbench.studies.models import Assignment, DisplayImage
from drawbench.studies.selectors import (
    assignment_display,
    rater_progress,
    study_progress,
)
from drawbench.studies.services.raters import rater_create, rater_finish
from tests.studies.helpers import (
    assignment_create,
    comparison_next_for_rater,  # noqa: E402
)

pytestmark = pytest.mark.django_db


def test_comparison_next_for_rater_never_serves_a_comparison_twice(make_study):
    study = make_study(n_prompts=3)
    rater = rater_create(study=study)
    seen = []

    while (comparison := comparison_next_for_rater(rater=rater)) is not None:
        assert comparison.pk not in seen
        seen.append(comparison.pk)
        assignment_create(rater=rater, comparison=comparison)

    assert sorted(seen) == sorted(study.comparisons.values_list("pk", flat=True))


def test_comparison_next_for_rater_serves_the_comparison_with_fewest_raters_first(make_study, answer):
    study = make_study(n_prompts=4)
    first, second, third, fourth = study.comparisons.order_by("prompt__position")
    answer(first)
    answer(first)
    answer(third)
    # A rater holding a comparison counts like one who answered it: the slot is taken until it is reclaimed.
    assignment_create(rater=rater_create(study=study), comparison=second)

    assert comparison_next_for_rater(rater=rater_create(study=study)) == fourth


def test_comparison_next_for_rater_skips_comparisons_with_enough_ratings(make_study, answer):
    study = make_study(n_prompts=2, ratings_per_comparison=1)
    first, second = study.comparisons.order_by("prompt__position")
    answer(first)
    rater = rater_create(study=study)

    assert comparison_next_for_rater(rater=rater) == second
    answer(second)
    assert comparison_next_for_rater(rater=rater) is None


def test_comparison_next_for_rater_spreads_raters_over_comparisons_already_served(make_study):
    study = make_study(n_prompts=5)
    *served, untouched = study.comparisons.order_by("prompt__position")
    for comparison in served:
        assignment_create(rater=rater_create(study=study), comparison=comparison)

    assert comparison_next_for_rater(rater=rater_create(study=study)) == untouched


def test_comparison_next_for_rater_stops_at_max_comparisons_per_rater(make_study, answer):
    study = make_study(n_prompts=4, max_comparisons_per_rater=2)
    rater = rater_create(study=study)
    answer(comparison_next_for_rater(rater=rater), rater=rater)
    answer(comparison_next_for_rater(rater=rater), rater=rater)

    assert comparison_next_for_rater(rater=rater) is None
    assert comparison_next_for_rater(rater=rater_create(study=study)) is not None


def test_study_progress_counts_judgments_against_the_target(make_study, answer):
    study = make_study(n_prompts=2, ratings_per_comparison=2)
    first, second = study.comparisons.order_by("prompt__position")
    answer(first)
    done = answer(first)
    answer(second)
    rater_finish(rater=done.rater)
    rater_create(study=study)

    progress = study_progress(study=study)

    assert progress == {
        "status": "open",
        "comparisons": 2,
        "comparisons_complete": 1,
        "questions": ["fidelity", "alignment"],
        "judgments": 6,
        "judgments_per_question": {"fidelity": 3, "alignment": 3},
        "target": 2 * 2 * 2,
        "fraction_complete": 6 / 8,
        "raters_started": 4,
        "raters_finished": 1,
    }


def test_study_progress_of_a_study_without_judgments_is_zero(make_study):
    progress = study_progress(study=make_study(open_study=False))

    assert (progress["judgments"], progress["fraction_complete"], progress["raters_started"]) == (0, 0.0, 0)
    assert progress["judgments_per_question"] == {"fidelity": 0, "alignment": 0}


def test_study_progress_takes_a_fixed_number_of_queries(make_study, answer, django_assert_num_queries):
    study = make_study(n_prompts=3)
    for comparison in study.comparisons.all():
        answer(comparison)
        answer(comparison)

    with django_assert_num_queries(4):
        study_progress(study=study)


def test_rater_progress_counts_answered_comparisons_up_to_the_rater_cap(make_study, answer):
    study = make_study(n_prompts=5, max_comparisons_per_rater=3)
    rater = rater_create(study=study)
    answer(comparison_next_for_rater(rater=rater), rater=rater)

    progress = rater_progress(rater=rater)

    assert (progress.done, progress.total, progress.current) == (1, 3, 2)


def test_assignment_display_lists_image_urls_in_the_recorded_order(make_study):
    study = make_study(n_prompts=1)
    comparison = study.comparisons.select_related("prompt").get()
    assignment = assignment_create(rater=rater_create(study=study), comparison=comparison, rng=random.Random(5))
    names = dict(DisplayImage.objects.filter(study=study).values_list("sample_id", "name"))
    urls = {pk: reverse("rater:display-image", args=[study.rater_token, name]) for pk, name in names.items()}

    display = assignment_display(assignment=Assignment.objects.get(pk=assignment.pk), study=study)

    assert display.left_image_urls == [urls[i] for i in assignment.left_sample_ids]
    assert display.right_image_urls == [urls[i] for i in assignment.right_sample_ids]
    assert display.caption == comparison.prompt.text
    assert [q.text for q in display.questions] == [
        "Which set of images is of higher quality?",
        f"Which set of images better represents the text caption: “{comparison.prompt.text}”?",
    ]


def test_rater_finish_keeps_the_first_finish_time(make_study):
    rater = rater_create(study=make_study(n_prompts=1))
    first = rater_finish(rater=rater).finished_at

    rater_finish(rater=rater)

    rater.refresh_from_db()
    assert rater.finished_at == first is not None
