"""The bundle's controls.csv: every answer to a gold trial or practice item, read back by the documented code with
every dtype and value, from which a third party recomputes each rater's gold accuracy and quality control's flag,
under the raters' pseudonymous ids only."""

import datetime
import json
import random
from itertools import count

import pandas as pd
import pytest
from django.utils import timezone

from drawbench.studies.models import Assignment, ControlAnswer, Judgment, Rater, RaterFlag
from drawbench.studies.selectors import rater_answer_stats
from drawbench.studies.services import serving
from drawbench.studies.services.answering import assignment_submit
from drawbench.studies.services.raters import rater_complete, rater_create, rater_flags_refresh
from drawbench.studies.services.serving import assignment_next_for_rater
from drawbench.studies.services.studies import study_create, study_open
from tests.factories import EvaluatedModelFactory, PromptFactory, PromptSetFactory, SampleFactory
from tests.results.test_bundle import assert_rows_equal, read_bundle_csv, write_bundle

pytestmark = pytest.mark.django_db

OTHER = {"left": "right", "right": "left", "tie": "left"}


@pytest.fixture
def gold_study(monkeypatch, django_user_model):
    """A study with two practice items and silent gold trials before every comparison, answered through the rater
    path by five crowd raters: careful except on practice (every practice answer wrong), wrong on every gold answer,
    wrong on exactly one, wrong on every other one, and careful. The study's min_gold_accuracy is then set to the
    one-mistake rater's accuracy exactly (a flag needs strictly less) and the flags refreshed, as the project does.
    Comparisons are answered left / tie (no pattern flag) seconds apart (never too fast)."""
    start, ticks = timezone.now(), count()
    monkeypatch.setattr(serving, "rater_clock", lambda: start + datetime.timedelta(seconds=5 * next(ticks)))
    owner = django_user_model.objects.create_user(
        username="owner-username-7f3a", email="owner-7f3a@example.org", password="pw"
    )
    prompt_set = PromptSetFactory()
    prompts = [
        PromptFactory(prompt_set=prompt_set, position=i + 1, category=("Colors", "Counting")[i % 2]) for i in range(6)
    ]
    models = [EvaluatedModelFactory() for _ in range(2)]
    for model in models:
        for prompt in prompts:
            for index in range(8):
                SampleFactory(evaluated_model=model, prompt=prompt, index=index)
    study = study_create(
        name="Gold study",
        prompt_set=prompt_set,
        evaluated_models=models,
        practice_items=2,
        gold_rate=1.0,
        min_gold_accuracy=0.8,
        display_size=64,
        created_by=owner,
    )
    study = study_open(study=study)
    policies = {
        "practice_wrong": lambda n, practice: not practice,
        "all_wrong": lambda n, practice: False,
        "one_wrong": lambda n, practice: n != 1,
        "every_other_wrong": lambda n, practice: n % 2 == 0,
        "careful": lambda n, practice: True,
    }
    raters = {}
    for r, (name, policy) in enumerate(policies.items()):
        rater = rater_create(
            study=study,
            platform=Rater.Platform.PROLIFIC,
            external_id=f"prolific-worker-{r}-5c1e",
            platform_study_id="prolific-study-5c1e",
            platform_session_id=f"prolific-session-{r}-5c1e",
        )
        rng, counted = random.Random(r), 0
        while (assignment := assignment_next_for_rater(rater=rater, rng=random.Random(r))) is not None:
            answers = {}
            for question in study.questions:
                if not assignment.is_control:
                    answers[question] = {"fidelity": "left", "alignment": "tie"}[question]
                    continue
                expected = assignment.gold_trial.expected(question, reference_on_left=assignment.reference_on_left)
                if expected is None:  # any answer is acceptable
                    answers[question] = rng.choice(["left", "right", "tie"])
                    continue
                practice = assignment.kind == Assignment.Kind.PRACTICE
                if not practice:
                    counted += 1
                answers[question] = expected if policy(counted, practice) else OTHER[expected]
            assignment_submit(rater=rater, key=assignment.key, answers=answers, response_time_ms=2500)
        rater_complete(rater=rater)
        raters[name] = rater
    one_wrong = rater_answer_stats(study=study)[raters["one_wrong"].pk]
    assert one_wrong.gold_answers >= 4, one_wrong  # enough gold answers that one mistake is a boundary case
    study.min_gold_accuracy = one_wrong.gold_correct / one_wrong.gold_answers
    study.save(update_fields=["min_gold_accuracy"])
    rater_flags_refresh(study=study)
    return study, raters, owner


def _utc(moment):
    return None if moment is None else pd.Timestamp(moment).tz_convert("UTC")


@pytest.mark.django_db
def test_controls_read_back_with_every_dtype_and_value(gold_study, tmp_path):
    study, raters, _ = gold_study
    bundle = write_bundle(study, tmp_path / "bundle")
    controls = read_bundle_csv(bundle, "controls")  # the documented code; dtypes as the dictionary says

    answers = ControlAnswer.objects.filter(gold_trial__study=study).select_related("assignment", "gold_trial", "rater")
    expected = [
        {
            "study_id": study.pk,
            "control_answer_id": a.pk,
            "rater_id": a.rater.public_id,
            "assignment_id": a.assignment_id,
            "is_gold": a.assignment.kind == Assignment.Kind.GOLD,
            "is_practice": a.assignment.kind == Assignment.Kind.PRACTICE,
            "gold_trial_id": a.gold_trial_id,
            "gold_trial_kind": a.gold_trial.kind,
            "prompt_id": a.gold_trial.prompt_id,
            "reference_on_left": a.assignment.reference_on_left,
            "question": a.question,
            "choice": a.choice,
            "expected": a.expected or None,
            "correct": a.correct,
            "response_time_ms": a.response_time_ms,
            "served_at": _utc(a.assignment.served_at),
            "shown_at": _utc(a.assignment.shown_at),
            "answered_at": _utc(a.assignment.completed_at),
        }
        for a in sorted(answers, key=lambda a: (a.assignment.completed_at, a.pk))
    ]
    assert_rows_equal(controls, expected)
    assert len(controls) == ControlAnswer.objects.count() > 0
    dtypes = {name: str(dtype) for name, dtype in controls.dtypes.items()}
    assert dtypes["control_answer_id"] == dtypes["response_time_ms"] == "int64"
    assert dtypes["is_gold"] == dtypes["is_practice"] == dtypes["reference_on_left"] == "bool"
    assert dtypes["correct"] == "boolean" and dtypes["answered_at"] == "datetime64[us, UTC]"
    # Both kinds of control, answers any choice fits (missing expected and correct) and ones that do not.
    assert controls["is_gold"].any() and controls["is_practice"].any()
    assert (controls["is_gold"] != controls["is_practice"]).all()
    assert controls["expected"].isna().any() and controls["expected"].notna().any()
    assert (controls["expected"].isna() == controls["correct"].isna()).all()
    assert (controls["served_at"] <= controls["shown_at"]).all() and (
        controls["shown_at"] < controls["answered_at"]
    ).all()
    # The same pseudonymous ids as judgments.csv: every rater answered both.
    judgments = read_bundle_csv(bundle, "judgments")
    assert set(controls["rater_id"]) == set(judgments["rater_id"]) == {r.public_id for r in raters.values()}
    assert not set(controls["assignment_id"]) & set(judgments["assignment_id"])


@pytest.mark.django_db
def test_quality_control_gold_flags_are_recomputed_from_the_bundle_alone(gold_study, tmp_path):
    study, raters, _ = gold_study
    bundle = write_bundle(study, tmp_path / "bundle")
    controls = read_bundle_csv(bundle, "controls")
    config = json.loads((bundle / "study.json").read_text(encoding="utf-8"))
    dictionary = json.loads((bundle / "controls.dictionary.json").read_text(encoding="utf-8"))
    assert (
        "is_gold true and correct not missing" in dictionary["notes"]
        and "below min_gold_accuracy" in (dictionary["notes"])
    )

    # As the dictionary says: gold rows whose answer could be wrong, share correct, strictly below the threshold.
    gold = controls[controls["is_gold"] & controls["correct"].notna()]
    answered = gold.groupby("rater_id")["correct"].count()
    correct = gold.groupby("rater_id")["correct"].sum()
    recomputed = {
        rater_id: correct[rater_id] / answered[rater_id] < config["min_gold_accuracy"] for rater_id in answered.index
    }

    # The project's own counts (the function quality control flags by) and its stored flags.
    stats = rater_answer_stats(study=study)
    for rater in raters.values():
        assert (answered[rater.public_id], correct[rater.public_id]) == (
            stats[rater.pk].gold_answers,
            stats[rater.pk].gold_correct,
        )
    flags = RaterFlag.objects.filter(rater__study=study)
    assert set(flags.values_list("reason", flat=True)) == {"failed_gold"}  # no other reason in this study
    failed_gold = set(flags.values_list("rater__public_id", flat=True))
    assert {rater_id for rater_id, flagged in recomputed.items() if flagged} == failed_gold
    assert failed_gold == {raters[name].public_id for name in ("all_wrong", "every_other_wrong")}
    assert raters["one_wrong"].public_id not in failed_gold  # at the threshold exactly: not flagged

    # What the results leave out ("Leave out raters flagged by quality control") is the same set of raters.
    judgments = read_bundle_csv(bundle, "judgments")
    assert judgments.groupby("rater_id")["rater_flagged"].all().to_dict() == recomputed
    assert not judgments["is_gold"].any() and not judgments["is_practice"].any()

    # Practice answers do not count: counting them would flag the rater who got only practice wrong.
    with_practice = controls[controls["correct"].notna()].groupby("rater_id")["correct"].mean()
    assert with_practice[raters["practice_wrong"].public_id] < config["min_gold_accuracy"]
    assert not recomputed[raters["practice_wrong"].public_id]


@pytest.mark.django_db
def test_the_bundle_names_raters_by_their_pseudonymous_id_only(gold_study, tmp_path):
    study, raters, owner = gold_study
    bundle = write_bundle(study, tmp_path / "bundle")
    text = "\n".join(path.read_text(encoding="utf-8") for path in sorted(bundle.iterdir()))
    assert all(rater.public_id in text for rater in raters.values())
    secrets = [owner.username, owner.email]
    for rater in Rater.objects.filter(study=study):
        secrets += [rater.external_id, rater.platform_study_id, rater.platform_session_id, rater.access_token]
    secrets += list(Assignment.objects.filter(rater__study=study).values_list("key", flat=True))
    assert all(secrets) and len(secrets) > 2 + 4 * len(raters)
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, leaked
    assert Judgment.objects.filter(comparison__study=study).exists()


@pytest.mark.django_db
def test_a_study_without_controls_has_an_empty_controls_csv_that_still_reads_with_its_dtypes(known_study, tmp_path):
    bundle = write_bundle(known_study.study, tmp_path / "bundle")
    controls = read_bundle_csv(bundle, "controls")  # dtypes checked there, on an empty frame too
    assert controls.empty
    judgments = json.loads((bundle / "judgments.dictionary.json").read_text(encoding="utf-8"))
    columns = {column["name"]: column["description"] for column in judgments["columns"]}
    assert "controls.csv" in judgments["notes"]
    assert "never judgments" in columns["is_gold"] and "controls.csv" in columns["is_practice"]
