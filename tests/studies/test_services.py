"""Study lifecycle, assignment and judgment services: what they write, and what they refuse with which message."""

import random

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from drawbench.studies.models import Assignment, Choice, Comparison, Judgment, Question, Study
from drawbench.studies.selectors import study_missing_samples
from drawbench.studies.services import answering, errors, studies
from drawbench.studies.services.raters import rater_create
from drawbench.studies.services.serving import assignment_next_for_rater
from drawbench.studies.services.studies import study_close, study_create, study_mark_generating, study_open
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, SampleFactory
from tests.studies import helpers
from tests.studies.helpers import assignment_create, judgment_submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt_set():
    prompt_set = PromptSetFactory()
    for position, category in enumerate(["Colors", "Counting", "Colors", "Text"], start=1):
        PromptFactory(prompt_set=prompt_set, position=position, category=category)
    return prompt_set


def test_study_create_makes_one_comparison_per_prompt_and_unordered_model_pair(prompt_set):
    first, second, third = EvaluatedModelFactory(), EvaluatedModelFactory(), EvaluatedModelFactory()

    study = study_create(name="Three models", prompt_set=prompt_set, evaluated_models=[third, first, second])

    pairs = {(c.prompt.position, c.model_a_id, c.model_b_id) for c in study.comparisons.select_related("prompt")}
    expected_pairs = [(third.pk, first.pk), (third.pk, second.pk), (first.pk, second.pk)]
    assert pairs == {(position, a, b) for position in (1, 2, 3, 4) for a, b in expected_pairs}
    assert study.comparisons.count() == 12
    assert study.status == Study.Status.DRAFT
    assert set(study.evaluated_models.all()) == {first, second, third}


def test_study_create_keeps_only_prompts_of_the_chosen_categories(prompt_set):
    study = study_create(
        name="Colors and text",
        prompt_set=prompt_set,
        evaluated_models=[EvaluatedModelFactory(), EvaluatedModelFactory()],
        categories=["Text", "Colors"],
    )

    positions = sorted(study.comparisons.values_list("prompt__position", flat=True))
    assert positions == [1, 3, 4]
    assert study.categories == ["Text", "Colors"]


def test_study_create_stores_its_settings(prompt_set, staff_user):
    study = study_create(
        name="Settings",
        prompt_set=prompt_set,
        evaluated_models=[EvaluatedModelFactory(), EvaluatedModelFactory()],
        questions=["alignment"],
        samples_per_side=4,
        ratings_per_comparison=3,
        max_comparisons_per_rater=2,
        instructions="Look closely.",
        consent_text="You may stop at any time.",
        practice_items=2,
        gold_rate=0.1,
        min_gold_accuracy=0.75,
        min_response_time_ms=1500,
        assignment_timeout_s=600,
        completion_code="DONE",
        completion_url="https://example.org/done",
        created_by=staff_user,
    )

    study.refresh_from_db()
    assert study.name == "Settings"
    assert (study.questions, study.samples_per_side, study.ratings_per_comparison) == (["alignment"], 4, 3)
    assert (study.max_comparisons_per_rater, study.instructions, study.created_by) == (2, "Look closely.", staff_user)
    assert (study.consent_text, study.practice_items, study.gold_rate, study.min_gold_accuracy) == (
        "You may stop at any time.", 2, 0.1, 0.75,
    )  # fmt: skip
    assert (study.min_response_time_ms, study.assignment_timeout_s) == (1500, 600)
    assert (study.completion_code, study.completion_url) == ("DONE", "https://example.org/done")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"models": "one"}, "evaluated_models", studies.ERROR_MODELS_TOO_FEW.format(n=1)),
        ({"models": "repeated"}, "evaluated_models", studies.ERROR_MODELS_TOO_FEW.format(n=1)),
        ({"categories": ["Colours"]}, "categories", None),
        (
            {"categories": ["Colors", "Colors"]},
            "categories",
            studies.ERROR_CATEGORY_REPEATED.format(category="Colors"),
        ),
        ({"questions": []}, "questions", studies.ERROR_QUESTIONS_EMPTY),
        ({"questions": ["beauty"]}, "questions", None),
        ({"questions": ["fidelity", "fidelity"]}, "questions", None),
        (
            {"samples_per_side": 0},
            "samples_per_side",
            studies.ERROR_NOT_POSITIVE.format(field="samples_per_side", value=0),
        ),
        (
            {"ratings_per_comparison": -3},
            "ratings_per_comparison",
            studies.ERROR_NOT_POSITIVE.format(field="ratings_per_comparison", value=-3),
        ),
        (
            {"max_comparisons_per_rater": 0},
            "max_comparisons_per_rater",
            studies.ERROR_NOT_POSITIVE.format(field="max_comparisons_per_rater", value=0),
        ),
        ({"gold_rate": 1.5}, "gold_rate", studies.ERROR_NOT_FRACTION.format(field="gold_rate", value=1.5)),
        (
            {"min_gold_accuracy": -0.1},
            "min_gold_accuracy",
            studies.ERROR_NOT_FRACTION.format(field="min_gold_accuracy", value=-0.1),
        ),
        (
            {"practice_items": -1},
            "practice_items",
            studies.ERROR_NOT_NEGATIVE.format(field="practice_items", value=-1),
        ),
        (
            {"assignment_timeout_s": 0},
            "assignment_timeout_s",
            studies.ERROR_NOT_POSITIVE.format(field="assignment_timeout_s", value=0),
        ),
        ({"completion_url": "not a url"}, "completion_url", None),
    ],
)
def test_study_create_refuses_bad_settings_naming_the_field_and_writes_nothing(prompt_set, overrides, field, message):
    model_a, model_b = EvaluatedModelFactory(), EvaluatedModelFactory()
    models = {"one": [model_a], "repeated": [model_a, model_a]}.get(overrides.pop("models", None), [model_a, model_b])

    with pytest.raises(ValidationError) as caught:
        study_create(name="Bad", prompt_set=prompt_set, evaluated_models=models, **overrides)

    assert list(caught.value.message_dict) == [field]
    if message is not None:
        assert message in caught.value.message_dict[field]
    assert Study.objects.count() == 0
    assert Comparison.objects.count() == 0


def test_study_create_error_messages_name_the_unknown_category_and_question(prompt_set):
    models = [EvaluatedModelFactory(), EvaluatedModelFactory()]

    with pytest.raises(ValidationError) as caught:
        study_create(
            name="Bad", prompt_set=prompt_set, evaluated_models=models, categories=["Colours"], questions=["x"]
        )

    errors = caught.value.message_dict
    known = "Colors, Counting, Text"
    assert errors["categories"] == [
        studies.ERROR_CATEGORY_UNKNOWN.format(category="Colours", prompt_set=prompt_set, known=known)
    ]
    assert errors["questions"] == [studies.ERROR_QUESTION_UNKNOWN.format(question="x", known="fidelity, alignment")]


def test_study_create_refuses_a_prompt_set_without_prompts():
    with pytest.raises(ValidationError) as caught:
        study_create(
            name="Empty",
            prompt_set=PromptSetFactory(),
            evaluated_models=[EvaluatedModelFactory(), EvaluatedModelFactory()],
        )

    assert "categories" in caught.value.message_dict


def test_study_missing_samples_names_each_model_and_prompt_short_of_samples(make_study):
    study = make_study(n_prompts=2, samples=8, open_study=False)
    model = study.evaluated_models.order_by("name").first()
    prompt = study.comparisons.order_by("prompt__position").first().prompt
    model.samples.filter(prompt=prompt, index__gte=5).delete()

    lines = study_missing_samples(study=study)

    assert lines == [f"{model}: prompt 1 (Colors) “{prompt.text}” has 5 of 8 samples"]


def test_study_open_refuses_until_every_side_has_its_samples(make_study):
    study = make_study(n_prompts=2, samples=7, open_study=False)

    with pytest.raises(ValidationError) as caught:
        study_open(study=study)

    header = studies.ERROR_SAMPLES_MISSING.format(study=study.name, n=4, k=8)
    assert caught.value.messages[0] == header
    assert len(caught.value.messages) == 5
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT

    for model in study.evaluated_models.all():
        for comparison in study.comparisons.all():
            SampleFactory(evaluated_model=model, prompt=comparison.prompt, index=7)
    study_open(study=study)

    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    assert study.opened_at is not None


def test_study_open_summarises_a_long_list_of_missing_samples(make_study):
    study = make_study(n_prompts=12, samples=0, open_study=False)

    with pytest.raises(ValidationError) as caught:
        study_open(study=study)

    messages = caught.value.messages
    assert len(messages) == 1 + studies.MISSING_LINES_SHOWN + 1
    assert messages[-1] == studies.ERROR_SAMPLES_MORE_MISSING.format(n=24 - studies.MISSING_LINES_SHOWN)


def test_study_lifecycle_goes_from_draft_through_generating_and_open_to_closed(make_study):
    study = make_study(open_study=False)

    study_mark_generating(study=study)
    study_mark_generating(study=study)
    study_open(study=study)
    study_close(study=study)

    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    assert study.closed_at is not None


def test_study_mark_generating_refuses_an_open_study(make_study):
    study = make_study()

    with pytest.raises(ValidationError) as caught:
        study_mark_generating(study=study)

    assert caught.value.messages == [
        studies.ERROR_STATUS_TRANSITION.format(study=study.name, status="open for rating", action="generated")
    ]


def test_study_close_refuses_a_closed_study(make_study):
    study = study_close(study=make_study())

    with pytest.raises(ValidationError):
        study_close(study=study)


def test_rater_create_refuses_a_study_that_is_not_open(make_study):
    study = make_study(open_study=False)

    with pytest.raises(ValidationError) as caught:
        rater_create(study=study)

    assert caught.value.messages == [errors.ERROR_STUDY_NOT_OPEN]


def test_assignment_create_draws_the_left_model_and_the_image_order_and_records_them(make_study):
    study = make_study(n_prompts=1)
    comparison = study.comparisons.get()
    samples = {
        model.pk: set(model.samples.values_list("id", flat=True)) for model in (comparison.model_a, comparison.model_b)
    }
    left_models, orders = set(), set()

    for seed in range(12):
        rater = rater_create(study=study)
        assignment = assignment_create(rater=rater, comparison=comparison, rng=random.Random(seed))
        right_model_id = (
            comparison.model_b_id if assignment.left_model_id == comparison.model_a_id else (comparison.model_a_id)
        )
        assert set(assignment.left_sample_ids) == samples[assignment.left_model_id]
        assert set(assignment.right_sample_ids) == samples[right_model_id]
        assert len(assignment.left_sample_ids) == 8
        left_models.add(assignment.left_model_id)
        orders.add(tuple(assignment.left_sample_ids))

    assert left_models == {comparison.model_a_id, comparison.model_b_id}
    assert len(orders) > 1


def test_assignment_create_is_reproducible_under_a_seeded_rng(make_study):
    study = make_study(n_prompts=1)
    comparison = study.comparisons.get()

    first = assignment_create(rater=rater_create(study=study), comparison=comparison, rng=random.Random(7))
    second = assignment_create(rater=rater_create(study=study), comparison=comparison, rng=random.Random(7))

    assert (first.left_model_id, first.left_sample_ids, first.right_sample_ids) == (
        second.left_model_id,
        second.left_sample_ids,
        second.right_sample_ids,
    )


def test_assignment_create_shows_samples_per_side_drawn_among_more_samples(make_study):
    study = make_study(n_prompts=1, samples=12, samples_per_side=8)
    comparison = study.comparisons.get()
    shown = set()

    for seed in range(6):
        assignment = assignment_create(rater=rater_create(study=study), comparison=comparison, rng=random.Random(seed))
        assert len(assignment.left_sample_ids) == len(set(assignment.left_sample_ids)) == 8
        shown.add(frozenset(assignment.left_sample_ids))

    assert len(shown) > 1


def test_assignment_create_refuses_a_comparison_of_another_study(make_study):
    study, other = make_study(), make_study()

    with pytest.raises(ValidationError) as caught:
        assignment_create(rater=rater_create(study=study), comparison=other.comparisons.first())

    assert caught.value.messages == [helpers.ERROR_COMPARISON_OTHER_STUDY]


def test_assignment_next_for_rater_shows_the_unanswered_assignment_again(make_study):
    study = make_study(n_prompts=3)
    rater = rater_create(study=study)

    first = assignment_next_for_rater(rater=rater)
    served = Assignment.objects.filter(rater=rater).count()
    again = assignment_next_for_rater(rater=rater)

    assert again.pk == first.pk
    assert Assignment.objects.filter(rater=rater).count() == served


@pytest.mark.parametrize("left_is_a", [True, False])
@pytest.mark.parametrize(("fidelity", "alignment"), [("left", "right"), ("right", "tie"), ("tie", "left")])
def test_judgment_submit_stores_answers_in_model_space(make_study, left_is_a, fidelity, alignment):
    study = make_study(n_prompts=1)
    comparison = study.comparisons.get()
    assignment = assignment_create(rater=rater_create(study=study), comparison=comparison)
    # Whichever side the draw put model A on, pin it for this case.
    assignment.left_model_id = comparison.model_a_id if left_is_a else comparison.model_b_id
    assignment.save(update_fields=["left_model"])
    left, right = (Choice.A, Choice.B) if left_is_a else (Choice.B, Choice.A)
    expected = {"left": left, "right": right, "tie": Choice.TIE}

    judgments = judgment_submit(
        assignment=assignment, answers={"fidelity": fidelity, "alignment": alignment}, response_time_ms=4200
    )

    stored = {j.question: j.choice for j in Judgment.objects.filter(assignment=assignment)}
    assert stored == {"fidelity": expected[fidelity], "alignment": expected[alignment]}
    assert len(judgments) == 2


def test_judgment_submit_copies_what_was_displayed_and_completes_the_assignment(make_study):
    study = make_study(n_prompts=1)
    rater = rater_create(study=study)
    assignment = assignment_create(rater=rater, comparison=study.comparisons.get(), rng=random.Random(3))

    judgment_submit(assignment=assignment, answers={"fidelity": "left", "alignment": "tie"}, response_time_ms=3100)

    for judgment in Judgment.objects.filter(assignment=assignment):
        assert judgment.rater == rater
        assert judgment.comparison_id == assignment.comparison_id
        assert judgment.left_model_id == assignment.left_model_id
        assert judgment.left_sample_ids == assignment.left_sample_ids
        assert judgment.right_sample_ids == assignment.right_sample_ids
        assert judgment.response_time_ms == 3100
    assignment.refresh_from_db()
    assert assignment.completed_at is not None


def test_judgment_submit_rejects_second_answer_from_same_rater(make_study):
    study = make_study(n_prompts=1)
    assignment = assignment_create(rater=rater_create(study=study), comparison=study.comparisons.get())
    judgment_submit(assignment=assignment, answers={"fidelity": "left", "alignment": "left"}, response_time_ms=900)

    with pytest.raises(ValidationError) as caught:
        judgment_submit(assignment=assignment, answers={"fidelity": "right", "alignment": "right"}, response_time_ms=9)

    assert caught.value.messages == [errors.ERROR_ASSIGNMENT_ANSWERED]
    first_choice = Choice.A if assignment.left_model_id == assignment.comparison.model_a_id else Choice.B
    assert sorted(Judgment.objects.values_list("question", "choice")) == [
        ("alignment", first_choice),
        ("fidelity", first_choice),
    ]


def test_judgment_submit_turns_a_lost_race_into_a_clear_error_and_writes_nothing(make_study):
    study = make_study(n_prompts=1)
    assignment = assignment_create(rater=rater_create(study=study), comparison=study.comparisons.get())
    # What a concurrent submission that got in first leaves behind: one answer already stored for this rater.
    Judgment.objects.create(
        assignment=assignment,
        comparison=assignment.comparison,
        rater=assignment.rater,
        question=Question.ALIGNMENT,
        choice=Choice.TIE,
        left_model=assignment.left_model,
        left_sample_ids=assignment.left_sample_ids,
        right_sample_ids=assignment.right_sample_ids,
        response_time_ms=10,
    )

    with pytest.raises(ValidationError) as caught:
        judgment_submit(assignment=assignment, answers={"fidelity": "left", "alignment": "left"}, response_time_ms=20)

    assert caught.value.messages == [errors.ERROR_ASSIGNMENT_ANSWERED]
    assert list(Judgment.objects.values_list("question", "choice")) == [("alignment", "tie")]
    assignment.refresh_from_db()
    assert assignment.completed_at is None


def test_the_database_refuses_a_second_judgment_of_one_question(make_study, answer):
    assignment = answer(make_study(n_prompts=1).comparisons.get())
    first = Judgment.objects.filter(assignment=assignment).first()

    with pytest.raises(IntegrityError):
        Judgment.objects.create(
            assignment=assignment,
            comparison=first.comparison,
            rater=first.rater,
            question=first.question,
            choice=Choice.TIE,
            left_model=first.left_model,
            left_sample_ids=[],
            right_sample_ids=[],
            response_time_ms=1,
        )


BAD_PAYLOADS = [
    pytest.param(
        {"fidelity": "left"},
        1000,
        errors.ERROR_ANSWER_MISSING.format(text=Question.ALIGNMENT.label),
        id="missing-question",
    ),
    pytest.param(
        {"fidelity": "left", "alignment": ""},
        1000,
        errors.ERROR_ANSWER_MISSING.format(text=Question.ALIGNMENT.label),
        id="empty-answer",
    ),
    pytest.param(
        {"fidelity": "A", "alignment": "left"},
        1000,
        errors.ERROR_CHOICE_UNKNOWN.format(choice="A", question="fidelity"),
        id="unknown-choice",
    ),
    pytest.param(
        {"fidelity": "left", "alignment": "left", "beauty": "left"},
        1000,
        errors.ERROR_ANSWER_UNEXPECTED.format(question="beauty"),
        id="extra-question",
    ),
    pytest.param(
        {"fidelity": "left", "alignment": "left"},
        -5,
        errors.ERROR_RESPONSE_TIME.format(max=answering.MAX_RESPONSE_TIME_MS, value=-5),
        id="negative-time",
    ),
    pytest.param(
        {"fidelity": "left", "alignment": "left"},
        answering.MAX_RESPONSE_TIME_MS + 1,
        errors.ERROR_RESPONSE_TIME.format(max=answering.MAX_RESPONSE_TIME_MS, value=answering.MAX_RESPONSE_TIME_MS + 1),
        id="absurd-time",
    ),
    pytest.param(
        {"fidelity": "left", "alignment": "left"},
        "12",
        answering.ERROR_RESPONSE_TIME_TYPE.format(value="'12'"),
        id="time-not-an-int",
    ),
]


@pytest.mark.parametrize(("answers", "response_time_ms", "message"), BAD_PAYLOADS)
def test_judgment_submit_rejects_a_bad_payload_and_writes_nothing(make_study, answers, response_time_ms, message):
    study = make_study(n_prompts=1)
    assignment = assignment_create(rater=rater_create(study=study), comparison=study.comparisons.get())

    with pytest.raises(ValidationError) as caught:
        judgment_submit(assignment=assignment, answers=answers, response_time_ms=response_time_ms)

    assert caught.value.messages == [message]
    assert Judgment.objects.count() == 0
    assignment.refresh_from_db()
    assert assignment.completed_at is None


def test_judgment_submit_refuses_answers_once_the_study_is_closed(make_study):
    study = make_study(n_prompts=1)
    assignment = assignment_create(rater=rater_create(study=study), comparison=study.comparisons.get())
    study_close(study=study)

    with pytest.raises(ValidationError) as caught:
        judgment_submit(assignment=assignment, answers={"fidelity": "left", "alignment": "left"}, response_time_ms=5)

    assert caught.value.messages == [errors.ERROR_STUDY_NOT_OPEN]
    assert Judgment.objects.count() == 0


def test_judgment_submit_asks_only_the_study_questions(make_study):
    study = make_study(n_prompts=1, questions=["alignment"])
    assignment = assignment_create(rater=rater_create(study=study), comparison=study.comparisons.get())

    judgment_submit(assignment=assignment, answers={"alignment": "tie"}, response_time_ms=5)

    assert list(Judgment.objects.values_list("question", "choice")) == [("alignment", "tie")]


def test_assignment_create_refuses_a_side_short_of_samples_without_naming_its_model(make_study):
    study = make_study(n_prompts=1)
    comparison = study.comparisons.select_related("prompt", "model_b").get()
    comparison.model_b.samples.filter(index=7).delete()

    with pytest.raises(ValidationError) as caught:
        assignment_create(rater=rater_create(study=study), comparison=comparison)

    assert caught.value.messages == [
        errors.ERROR_NOT_ENOUGH_SAMPLES.format(comparison=comparison.pk, n=7, position=1, k=8)
    ]
    assert comparison.model_b.name not in caught.value.messages[0]
    assert Assignment.objects.count() == 0
