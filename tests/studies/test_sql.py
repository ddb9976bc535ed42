"""The hand-written SQL of the answer path reads and writes rows exactly as the ORM does."""

import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from drawbench.studies import sql
from drawbench.studies.models import Assignment, DisplayImage, Judgment, Rater, Study
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater
from tests.factories import SampleFactory
from tests.studies.helpers import assignment_create

pytestmark = pytest.mark.django_db

ASSIGNMENT_FIELDS = [field.attname for field in Assignment._meta.concrete_fields]
STUDY_FIELDS = [field.attname for field in Study._meta.concrete_fields]


def test_the_lock_reads_the_assignment_the_study_and_the_counts_as_the_orm_does(make_study):
    study = make_study(n_prompts=3, practice_items=1, max_comparisons_per_rater=2, gold_rate=0.5)
    rater = rater_create(study=study)
    practice = assignment_next_for_rater(rater=rater, rng=random.Random(0))
    assignment_submit(
        rater=rater, key=practice.key, answers={"fidelity": "tie", "alignment": "tie"}, response_time_ms=9
    )
    item = assignment_next_for_rater(rater=rater, rng=random.Random(1))

    locked = sql.assignment_lock(rater_id=rater.pk, key=item.key)

    stored = Assignment.objects.get(pk=item.pk)
    assert [getattr(locked.assignment, f) for f in ASSIGNMENT_FIELDS] == [getattr(stored, f) for f in ASSIGNMENT_FIELDS]
    assert [getattr(locked.study, f) for f in STUDY_FIELDS] == [getattr(study, f) for f in STUDY_FIELDS]
    assert locked.model_a_id == (stored.comparison.model_a_id if stored.comparison_id else None)
    held = Assignment.objects.filter(rater=rater, kind="comparison").count()
    gold_served = Assignment.objects.filter(rater=rater, kind="gold").count()
    last_answered = Rater.objects.get(pk=rater.pk).last_answered_at
    assert last_answered is not None
    assert locked.counts == (0, 1, held, 3, study.gold_trials.count(), gold_served, held, last_answered)
    assert sql.assignment_lock(rater_id=rater.pk, key="no-such-key") is None


def test_counts_that_the_study_settings_make_moot_are_not_read(make_study):
    study = make_study(n_prompts=2, max_comparisons_per_rater=None)
    rater = rater_create(study=study)
    item = assignment_next_for_rater(rater=rater)

    locked = sql.assignment_lock(rater_id=rater.pk, key=item.key, study=study)

    held = Assignment.objects.filter(rater=rater).count()
    assert locked.counts == (0, None, None, 2, None, None, None, None)
    assert sql.rater_counts(rater_id=rater.pk) == (0, 0, held, 2, 0, 0, held, None)


def test_the_token_lookup_reads_the_rater_and_study_as_the_orm_does(make_study):
    rater = rater_create(study=make_study(n_prompts=1), external_id="w-1", platform="mturk")

    found = sql.rater_by_access_token(token=rater.access_token)

    stored = Rater.objects.select_related("study").get(pk=rater.pk)
    assert found == stored and found.external_id == "w-1" and found.platform == "mturk"
    assert found.study.questions == stored.study.questions and found.study.name == stored.study.name
    assert sql.rater_by_access_token(token=rater.access_token + "x") is None


def test_a_claim_returns_the_comparison_its_prompt_and_its_samples(make_study):
    study = make_study(n_prompts=1, samples=9)
    rater = rater_create(study=study)

    [(comparison, samples)] = sql.comparisons_claim(rater_id=rater.pk, study=study, wait=False)

    stored = study.comparisons.select_related("prompt").get()
    assert (comparison.pk, comparison.model_a_id, comparison.model_b_id) == (
        stored.pk, stored.model_a_id, stored.model_b_id,
    )  # fmt: skip
    assert (comparison.prompt.text, comparison.prompt.position) == (stored.prompt.text, stored.prompt.position)
    # Each sample with its display name in this study (never its storage name).
    assert sorted(samples) == sorted(
        DisplayImage.objects.filter(
            study=study, sample__evaluated_model__in=[stored.model_a_id, stored.model_b_id]
        ).values_list("sample_id", "sample__evaluated_model_id", "name")
    )
    assert study.comparisons.get().n_assigned == 1


def test_display_names_are_read_once_per_study_and_again_for_a_sample_not_seen_yet(make_study):
    study = make_study(n_prompts=2, samples=8)
    stored = dict(DisplayImage.objects.filter(study=study, sample__isnull=False).values_list("sample_id", "name"))
    sql._DISPLAY_NAMES.clear()

    with CaptureQueriesContext(connection) as first:
        assert sql.study_display_names(study) == stored
    with CaptureQueriesContext(connection) as again:
        assert sql.study_display_names(study, list(stored)[:3]) == stored
    assert (len(first), len(again)) == (1, 0)

    # A sample the process has not seen (never the case for an open study, whose samples got their names when it
    # first opened): read again, not answered from what was read.
    extra = DisplayImage.objects.create(study=study, name="n" * 22, sample=SampleFactory(), file="x.jpg")
    assert sql.study_display_names(study, [extra.sample_id])[extra.sample_id] == extra.name
    # Another study under the same id (SQLite reuses ids after a rollback) has another rater token: read afresh.
    impostor = Study.objects.get(pk=study.pk)
    impostor.rater_token = "another-token"
    DisplayImage.objects.filter(pk=extra.pk).update(name="m" * 22)
    assert sql.study_display_names(impostor)[extra.sample_id] == "m" * 22


@pytest.mark.parametrize("wait", [False, True])
def test_a_claim_of_several_takes_one_slot_of_each_of_distinct_comparisons_the_rater_has_not_seen(make_study, wait):
    study = make_study(n_prompts=5, ratings_per_comparison=2)
    rater = rater_create(study=study)
    seen = assignment_create(rater=rater, comparison=study.comparisons.order_by("id").first())

    taken = sql.comparisons_claim(rater_id=rater.pk, study=study, wait=wait, limit=3)

    ids = [comparison.pk for comparison, _ in taken]
    assert len(ids) == len(set(ids)) == 3 and seen.comparison_id not in ids
    assert all(len(samples) == 2 * study.samples_per_side for _, samples in taken)
    assert dict(study.comparisons.values_list("id", "n_assigned")) == {
        c.pk: int(c.pk in ids or c.pk == seen.comparison_id) for c in study.comparisons.all()
    }
    # Asked for more than are left, a claim takes what there is: 5 comparisons × 2 slots, 4 taken, 6 left.
    other = rater_create(study=study)
    assert len(sql.comparisons_claim(rater_id=other.pk, study=study, wait=wait, limit=8)) == 5
    assert len(sql.comparisons_claim(rater_id=other.pk, study=study, wait=wait, limit=8)) == 1
    assert len(sql.comparisons_claim(rater_id=other.pk, study=study, wait=wait, limit=8)) == 0


def test_an_answer_is_recorded_with_the_values_given(make_study):
    study = make_study(n_prompts=1)
    rater = rater_create(study=study)
    item = assignment_next_for_rater(rater=rater)
    now = timezone.now()
    judgments = [
        Judgment(
            assignment_id=item.pk, comparison_id=item.comparison_id, rater_id=rater.pk, question=question,
            choice=choice, left_model_id=item.left_model_id, left_sample_ids=item.left_sample_ids,
            right_sample_ids=item.right_sample_ids, response_time_ms=1234, created_at=now,
        )
        for question, choice in (("fidelity", "A"), ("alignment", "tie"))
    ]  # fmt: skip

    sql.answer_record(assignment_id=item.pk, judgments=judgments, completed_at=now, shown_at=item.served_at)

    stored = list(Judgment.objects.filter(assignment_id=item.pk).order_by("id"))
    assert [j.pk for j in judgments] == [j.pk for j in stored]
    assert [(j.question, j.choice, j.left_sample_ids, j.response_time_ms, j.created_at) for j in stored] == [
        ("fidelity", "A", item.left_sample_ids, 1234, now),
        ("alignment", "tie", item.left_sample_ids, 1234, now),
    ]
    assert Assignment.objects.get(pk=item.pk).completed_at == now


def test_the_benchmark_ceiling_is_not_served_unless_enabled(client, make_study):
    study = make_study(n_prompts=1)

    with pytest.raises(NoReverseMatch):
        reverse("api-rater-ceiling", args=[study.rater_token])
    assert client.post(f"/api/rater/{study.rater_token}/ceiling/", {}).status_code == 404


@pytest.mark.urls("tests.studies.ceiling_urls")
def test_the_benchmark_ceiling_writes_the_two_judgments_of_an_assignment(client, make_study):
    study = make_study(n_prompts=1)
    item = assignment_next_for_rater(rater=rater_create(study=study))
    body = {"key": item.key, "fidelity": "A", "alignment": "tie", "response_time_ms": 99}

    response = client.post(f"/api/rater/{study.rater_token}/ceiling/", body, content_type="application/json")

    assert response.status_code == 201
    assert sorted(Judgment.objects.filter(assignment=item).values_list("question", "choice")) == [
        ("alignment", "tie"),
        ("fidelity", "A"),
    ]
