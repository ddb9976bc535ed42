"""Quality control: gold trials made from the study's samples, practice items, and flags that never delete data."""

import io
import itertools
import random
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from drawbench.results.selectors import judgments_frame, study_results
from drawbench.studies import quality
from drawbench.studies.models import (
    Assignment,
    Comparison,
    ControlAnswer,
    DisplayImage,
    GoldTrial,
    Judgment,
    RaterFlag,
)
from drawbench.studies.selectors import assignment_display
from drawbench.studies.services import serving
from drawbench.studies.services.answering import PRACTICE_FEEDBACK, assignment_submit
from drawbench.studies.services.gold import gold_trials_prepare
from drawbench.studies.services.raters import rater_complete, rater_create, rater_flags_refresh
from drawbench.studies.services.serving import assignment_next_for_rater

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unhurried_clock")]


def stored_pixels(name: str) -> np.ndarray:
    with default_storage.open(name, "rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"), dtype=np.int16)


def expected_displayed(assignment: Assignment, question: str) -> str | None:
    return assignment.gold_trial.expected(question, reference_on_left=assignment.reference_on_left)


def answer_as_told(assignment: Assignment, *, correct: bool, fallback: str = "tie") -> dict[str, str]:
    """Answers to a control item: the expected ones (or wrong ones), `fallback` where anything goes."""
    answers = {}
    for question in ("fidelity", "alignment"):
        expected = expected_displayed(assignment, question)
        if expected is None:
            answers[question] = fallback
        elif correct:
            answers[question] = expected
        else:
            answers[question] = "left" if expected != "left" else "right"
    return answers


# --- gold trials ----------------------------------------------------------------------------------------------


def display_pixels_of(name: str) -> np.ndarray:
    """The pixels a rater's browser decodes for a display image."""
    with default_storage.open(DisplayImage.objects.get(name=name).file, "rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"), dtype=np.int16)


def test_gold_trials_of_each_kind_are_made_from_the_study_samples(make_study):
    study = make_study(n_prompts=5, categories=("Colors", "Counting"), samples=9)

    def source(name):
        """(model, prompt) of the sample a gold image was made from."""
        image = DisplayImage.objects.select_related("made_from").get(name=name)
        return image.made_from.evaluated_model_id, image.made_from.prompt_id

    trials = gold_trials_prepare(study=study, rng=random.Random(1))

    kinds = [t.kind for t in trials]
    assert kinds.count("identical") == kinds.count("mismatch") == kinds.count("degraded") == 4
    every_name = [n for trial in trials for n in (*trial.reference_images, *trial.foil_images)]
    assert len(set(every_name)) == len(every_name), "a gold image's name appears twice"
    assert not DisplayImage.objects.filter(name__in=every_name, sample__isnull=False).exists()
    for trial in trials:
        assert len(trial.reference_images) == len(trial.foil_images) == 8
        model_id, prompt_id = source(trial.reference_images[0])
        assert prompt_id == trial.prompt_id
        assert {source(n) for n in trial.reference_images[1:3]} == {(model_id, prompt_id)}
        if trial.kind == "identical":
            assert sorted(map(source, trial.foil_images)) == sorted(map(source, trial.reference_images))
        if trial.kind == "mismatch":
            foil_model, foil_prompt = source(trial.foil_images[0])
            assert foil_model == model_id and foil_prompt != prompt_id
            assert study.prompt_set.prompts.get(pk=foil_prompt).category != trial.prompt.category


def test_a_degraded_set_is_a_visibly_worse_copy_made_like_any_display_image(make_study):
    study = make_study(n_prompts=2)

    trial = next(t for t in gold_trials_prepare(study=study, rng=random.Random(2)) if t.kind == "degraded")

    files = DisplayImage.objects.filter(study=study)
    sizes = {default_storage.size(f) for f in files.values_list("file", flat=True)}
    assert len(sizes) == 1, "display images of one study differ in length"
    for clean, degraded in zip(trial.reference_images, trial.foil_images, strict=True):
        with default_storage.open(DisplayImage.objects.get(name=degraded).file, "rb") as handle:
            image = Image.open(io.BytesIO(handle.read()))
        assert image.size == (study.display_size, study.display_size) and image.format == "JPEG"
        assert not image.getexif()
        assert np.abs(display_pixels_of(degraded) - display_pixels_of(clean)).mean() > 8


def test_gold_trials_are_made_once(make_study):
    study = make_study(n_prompts=2)
    first = gold_trials_prepare(study=study)

    again = gold_trials_prepare(study=study)

    assert [t.pk for t in again] == [t.pk for t in first]
    assert GoldTrial.objects.count() == len(first)


def test_opening_a_study_makes_gold_trials_only_when_quality_control_asks_for_them(make_study):
    plain = make_study(n_prompts=2)
    with_gold = make_study(n_prompts=2, gold_rate=0.1)
    with_practice = make_study(n_prompts=2, practice_items=1)

    assert not plain.gold_trials.exists()
    assert with_gold.gold_trials.exists() and with_practice.gold_trials.exists()


def test_degraded_copy_blurs_and_adds_noise_reproducibly():
    rng = np.random.default_rng(0)
    detailed = Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8), mode="RGB")

    first = quality.degraded_copy(detailed, seed=3)
    again = quality.degraded_copy(detailed, seed=3)
    other = quality.degraded_copy(detailed, seed=4)

    original = np.asarray(detailed, dtype=np.int16)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    # Blurred: neighbouring pixels are much closer than in the original, despite the noise.
    roughness = lambda a: np.abs(np.diff(a.astype(np.int16), axis=1)).mean()  # noqa: E731
    assert roughness(np.asarray(first)) < roughness(original) / 2
    assert np.abs(np.asarray(first, dtype=np.int16) - original).mean() > 20


# --- serving and answering --------------------------------------------------------------------------------------


def test_at_gold_rate_one_gold_trials_come_between_comparisons_and_stop_when_they_do(make_study):
    study = make_study(n_prompts=2, gold_rate=1.0)
    rater = rater_create(study=study)
    trials = study.gold_trials.count()
    kinds = []

    while (assignment := assignment_next_for_rater(rater=rater, rng=random.Random(len(kinds)))) is not None:
        kinds.append(assignment.kind)
        answers = answer_as_told(assignment, correct=True) if assignment.is_control else {}
        assignment_submit(
            rater=rater, key=assignment.key, answers=answers or {"fidelity": "left", "alignment": "left"},
            response_time_ms=2000,
        )  # fmt: skip

    # Never more gold than the share allows (the rate, plus one), and never once no comparison is left.
    for served in range(1, len(kinds) + 1):
        assert kinds[:served].count("gold") <= study.gold_rate * served + 1
    assert kinds[-1] == "comparison" and kinds.count("comparison") == 2
    assert ControlAnswer.objects.filter(rater=rater).count() == 2 * kinds.count("gold") < 2 * trials
    assert Judgment.objects.filter(rater=rater).count() == 2 * 2
    assert list(Comparison.objects.values_list("n_assigned", flat=True)) == [1, 1]


def test_at_gold_rate_zero_no_gold_trial_is_ever_served(make_study):
    study = make_study(n_prompts=3, practice_items=1)
    rater = rater_create(study=study)

    kinds = []
    while (assignment := assignment_next_for_rater(rater=rater)) is not None:
        kinds.append(assignment.kind)
        answers = (
            answer_as_told(assignment, correct=True)
            if assignment.is_control
            else {"fidelity": "left", "alignment": "tie"}
        )
        assignment_submit(rater=rater, key=assignment.key, answers=answers, response_time_ms=2000)

    assert kinds == ["practice", "comparison", "comparison", "comparison"]


def test_a_gold_trial_looks_like_a_comparison_to_the_rater(make_study):
    study = make_study(n_prompts=2, gold_rate=1.0)
    rater = rater_create(study=study)
    gold = assignment_next_for_rater(rater=rater, rng=random.Random(0))

    display = assignment_display(assignment=gold, study=study)

    trial = gold.gold_trial
    left_set = trial.reference_images if gold.reference_on_left else trial.foil_images
    assert not display.practice
    assert display.caption == trial.prompt.text
    assert sorted(u.rsplit("/", 1)[1] for u in display.left_image_urls) == sorted(left_set)
    assert len(display.left_image_urls) == len(display.right_image_urls) == study.samples_per_side
    assert [q.value for q in display.questions] == ["fidelity", "alignment"]


def test_practice_items_come_first_are_labelled_and_say_what_was_expected(make_study):
    study = make_study(n_prompts=2, practice_items=2)
    rater = rater_create(study=study)

    outcomes = []
    for _ in range(2):
        practice = assignment_next_for_rater(rater=rater)
        assert practice.kind == "practice" and assignment_display(assignment=practice, study=study).practice
        outcomes.append(
            assignment_submit(
                rater=rater, key=practice.key, answers=answer_as_told(practice, correct=False), response_time_ms=900
            )
        )

    assert assignment_next_for_rater(rater=rater).kind == "comparison"
    assert [o.assignment.gold_trial.kind for o in outcomes] == ["degraded", "degraded"]
    reference = "A" if outcomes[0].assignment.reference_on_left else "B"
    assert outcomes[0].feedback == PRACTICE_FEEDBACK["degraded"].format(
        reference=reference, foil="B" if reference == "A" else "A"
    )
    assert set(ControlAnswer.objects.values_list("practice", flat=True)) == {True}
    assert not RaterFlag.objects.exists()


@pytest.mark.parametrize("reference_on_left", [True, False])
@pytest.mark.parametrize(
    ("kind", "expected_fidelity", "expected_alignment"),
    [("identical", "tie", "tie"), ("mismatch", None, "reference"), ("degraded", "reference", None)],
)
def test_each_kind_of_gold_trial_expects_its_answer_on_its_question(
    kind, expected_fidelity, expected_alignment, reference_on_left
):
    trial = GoldTrial(kind=kind)
    side = "left" if reference_on_left else "right"

    got = [trial.expected(q, reference_on_left=reference_on_left) for q in ("fidelity", "alignment")]

    assert got == [side if e == "reference" else e for e in (expected_fidelity, expected_alignment)]


def test_gold_answers_are_marked_right_or_wrong_and_never_become_judgments(make_study):
    study = make_study(n_prompts=2, gold_rate=1.0)
    rater = rater_create(study=study)
    gold = assignment_next_for_rater(rater=rater, rng=random.Random(5))

    assignment_submit(rater=rater, key=gold.key, answers=answer_as_told(gold, correct=False), response_time_ms=3000)

    answers = {a.question: a for a in ControlAnswer.objects.filter(assignment=gold)}
    for question, answer in answers.items():
        expected = expected_displayed(gold, question)
        assert answer.expected == (expected or "")
        assert answer.correct is (None if expected is None else False)
    assert not Judgment.objects.exists()


# --- flags ------------------------------------------------------------------------------------------------------


def rate_everything(study, rater, *, fidelity="left", alignment="tie", response_time_ms=2000, gold_correct=True):
    while (assignment := assignment_next_for_rater(rater=rater, rng=random.Random(rater.pk))) is not None:
        if assignment.is_control:
            answers = answer_as_told(assignment, correct=gold_correct)
        else:
            answers = {"fidelity": fidelity, "alignment": alignment}
        assignment_submit(rater=rater, key=assignment.key, answers=answers, response_time_ms=response_time_ms)
    rater_complete(rater=rater)


def flags_of(rater) -> set[str]:
    return set(RaterFlag.objects.filter(rater=rater).values_list("reason", flat=True))


def test_a_rater_who_fails_gold_trials_is_flagged_as_soon_as_they_answer_one(make_study):
    study = make_study(n_prompts=2, gold_rate=1.0)
    careless, careful = rater_create(study=study), rater_create(study=study)
    for rater, correct in ((careless, False), (careful, True)):
        gold = assignment_next_for_rater(rater=rater, rng=random.Random(1))
        assignment_submit(
            rater=rater, key=gold.key, answers=answer_as_told(gold, correct=correct), response_time_ms=3000
        )

    assert flags_of(careless) == {"failed_gold"}
    assert flags_of(careful) == set()
    assert "0 of" in RaterFlag.objects.get(rater=careless).detail


@pytest.mark.parametrize(
    ("fidelity", "alignment", "seconds_per_tick", "flags"),
    [
        ("left", "left", 5.0, {"always_left"}),
        ("right", "right", 5.0, {"always_right"}),
        ("tie", "tie", 5.0, {"always_tie"}),
        ("left", "tie", 0.04, {"too_fast"}),
        ("left", "tie", 5.0, set()),
    ],
)
def test_answer_patterns_flag_a_rater_when_they_finish(
    make_study, monkeypatch, fidelity, alignment, seconds_per_tick, flags
):
    study = make_study(n_prompts=6)
    rater = rater_create(study=study)
    start, ticks = timezone.now(), itertools.count()
    monkeypatch.setattr(serving, "rater_clock", lambda: start + timedelta(seconds=seconds_per_tick * next(ticks)))

    # Whatever the client claims (4 s here, as a bot that answers in 40 ms would), the server's clock decides.
    rate_everything(study, rater, fidelity=fidelity, alignment=alignment, response_time_ms=4000)

    assert flags_of(rater) == flags


def test_a_flag_whose_condition_no_longer_holds_is_withdrawn_and_no_answer_is_touched(make_study):
    study = make_study(n_prompts=6)
    rater = rater_create(study=study)
    rate_everything(study, rater, fidelity="tie", alignment="tie")
    assert flags_of(rater) == {"always_tie"}
    judgments = list(Judgment.objects.values_list("pk", "choice"))

    study.min_response_time_ms = 60_000
    study.save(update_fields=["min_response_time_ms"])
    rater_flags_refresh(study=study)

    assert flags_of(rater) == {"always_tie", "too_fast"}
    assert list(Judgment.objects.values_list("pk", "choice")) == judgments


def test_results_are_computed_with_and_without_flagged_raters(make_study):
    study = make_study(n_prompts=6)
    lazy, diligent = rater_create(study=study), rater_create(study=study)
    rate_everything(study, lazy, fidelity="left", alignment="left")
    rate_everything(study, diligent, fidelity="tie", alignment="left", response_time_ms=4000)

    everyone = judgments_frame(study=study)
    unflagged = judgments_frame(study=study, exclude_flagged_raters=True)

    assert flags_of(lazy) == {"always_left"} and flags_of(diligent) == set()
    assert len(everyone) == 24 and len(unflagged) == 12
    assert set(everyone.loc[everyone["rater_flagged"], "rater_id"]) == {lazy.public_id}
    assert set(unflagged["rater_id"]) == {diligent.public_id}
    assert study_results(study=study)["n_judgments"] == 24
    assert study_results(study=study, exclude_flagged_raters=True)["n_judgments"] == 12
    assert Judgment.objects.count() == 24


@pytest.mark.parametrize(
    ("stats", "flags"),
    [
        (quality.RaterAnswerStats(gold_answers=5, gold_correct=4), set()),
        (quality.RaterAnswerStats(gold_answers=5, gold_correct=3), {"failed_gold"}),
        (quality.RaterAnswerStats(judgments=9, left=9), set()),
        (quality.RaterAnswerStats(judgments=20, left=19, right=1), {"always_left"}),
        (quality.RaterAnswerStats(judgments=20, left=18, tie=2), set()),
        (quality.RaterAnswerStats(judgments=20, tie=20), {"always_tie"}),
        (quality.RaterAnswerStats(items=10, fast_items=5), {"too_fast"}),
        (quality.RaterAnswerStats(items=10, fast_items=4), set()),
    ],
)
def test_flag_rules_at_their_thresholds(stats, flags):
    got = quality.rater_flag_reasons(stats, min_gold_accuracy=0.8, min_response_time_ms=1000)

    assert set(got) == flags


def test_no_response_time_floor_means_no_too_fast_flag():
    stats = quality.RaterAnswerStats(items=10, fast_items=10)

    assert quality.rater_flag_reasons(stats, min_gold_accuracy=0.8, min_response_time_ms=0) == {}
