"""Many raters at once on PostgreSQL, each in its own thread with its own connection: every comparison ends with
exactly its target of distinct raters (nothing over-assigned, nothing starved), abandoned items included.

Skipped on SQLite (which serialises writers anyway), except under DRAWBENCH_REQUIRE_SERVICES=1 where it fails.
"""

import random
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from drawbench.studies.models import Assignment, Comparison, Judgment
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ANSWERS = {"fidelity": "right", "alignment": "left"}


def run_raters(raters, *, abandon_first: set[int] = frozenset()) -> list[BaseException]:
    """Start every rater at the same moment; each answers until it has nothing left. Returns the errors raised."""
    barrier = threading.Barrier(len(raters))
    errors: list[BaseException] = []

    def work(index: int, rater) -> None:
        rng = random.Random(index)
        try:
            barrier.wait()
            while (assignment := assignment_next_for_rater(rater=rater, rng=rng)) is not None:
                assignment_submit(rater=rater, key=assignment.key, answers=ANSWERS, response_time_ms=1200)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i, rater)) for i, rater in enumerate(raters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def comparison_counts(study):
    return list(
        Comparison.objects.filter(study=study)
        .annotate(
            raters=Count("judgments__rater", distinct=True),
            answered=Count("assignments", distinct=True, filter=Q(assignments__completed_at__isnull=False)),
        )
        .values_list("raters", "answered", "n_assigned")
    )


def test_concurrent_raters_give_every_comparison_exactly_its_target(on_postgresql, make_study):
    study = make_study(n_prompts=12, ratings_per_comparison=5)
    raters = [rater_create(study=study) for _ in range(24)]

    errors = run_raters(raters)

    assert errors == []
    assert comparison_counts(study) == [(5, 5, 5)] * 12
    assert Judgment.objects.filter(comparison__study=study).count() == 12 * 5 * 2
    assert not Assignment.objects.filter(completed_at__isnull=True).exists()


def test_concurrent_raters_reclaim_abandoned_items_and_still_fill_every_comparison(on_postgresql, make_study):
    study = make_study(n_prompts=8, ratings_per_comparison=4)
    quitters = [rater_create(study=study) for _ in range(6)]
    for quitter in quitters:
        assignment_next_for_rater(rater=quitter)
    abandoned = list(Assignment.objects.filter(rater__in=quitters).values_list("pk", flat=True))
    # Between them they hold most of the slots (each rater is served a batch at a time).
    assert len(abandoned) >= min(6 * settings.DRAWBENCH_RATER_BATCH, 8 * 4) // 2
    Assignment.objects.filter(pk__in=abandoned).update(expires_at=timezone.now() - timedelta(seconds=1))
    raters = [rater_create(study=study) for _ in range(20)]

    errors = run_raters(raters)

    assert errors == []
    assert comparison_counts(study) == [(4, 4, 4)] * 8
    assert Assignment.objects.filter(pk__in=abandoned, released_at__isnull=False).count() == len(abandoned)
    assert Judgment.objects.filter(rater__in=quitters).count() == 0
