"""Automatic judges in a study's results: judge_samples stores per-sample scores, the results page shows PPI++
beside the human-only numbers and says whether the judge covers comparisons beyond those humans rated."""

import io
import json

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image

from drawbench.results.models import JudgeScore
from drawbench.results.selectors import study_judge_inputs, study_results
from drawbench.results.services import judge_scores_record
from tests.factories import (
    AssignmentFactory,
    ComparisonFactory,
    EvaluatedModelFactory,
    JudgmentFactory,
    PromptFactory,
    RaterFactory,
    SampleFactory,
    StudyFactory,
)

SETS_PER_PROMPT = 3


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def judged_study(db):
    """Two models, 12 prompts in two categories, two samples per side and three complete sample sets per prompt
    and model; humans saw set 0 only. The humans prefer A where the judge scores A's samples higher."""
    rng = np.random.default_rng(5)
    study = StudyFactory(name="Judged", questions=["alignment"], samples_per_side=2)
    model_a = EvaluatedModelFactory(name="good", version="1")
    model_b = EvaluatedModelFactory(name="plain", version="1")
    study.evaluated_models.set([model_a, model_b])
    raters = [RaterFactory(study=study) for _ in range(6)]
    scores: dict[int, float] = {}
    for position in range(1, 13):
        prompt = PromptFactory(prompt_set=study.prompt_set, position=position, category="X" if position <= 6 else "Y")
        samples = {}
        for model in (model_a, model_b):
            for index in range(2 * SETS_PER_PROMPT):
                sample = SampleFactory(evaluated_model=model, prompt=prompt, index=index)
                scores[sample.pk] = float(rng.normal(0.5 if model == model_a else 0.0, 1.0))
                samples[(model.pk, index)] = sample.pk
        comparison = ComparisonFactory(study=study, prompt=prompt, model_a=model_a, model_b=model_b)
        a_set = [samples[(model_a.pk, 0)], samples[(model_a.pk, 1)]]
        b_set = [samples[(model_b.pk, 0)], samples[(model_b.pk, 1)]]
        margin = np.mean([scores[i] for i in a_set]) - np.mean([scores[i] for i in b_set])
        for index, rater in enumerate(raters):
            left_is_a = index % 2 == 0
            assignment = AssignmentFactory(
                comparison=comparison,
                rater=rater,
                left_model=model_a if left_is_a else model_b,
                left_sample_ids=a_set if left_is_a else b_set,
                right_sample_ids=b_set if left_is_a else a_set,
            )
            chance = 1 / (1 + np.exp(-2 * margin))
            choice = "A" if rng.random() < chance else ("tie" if rng.random() < 0.3 else "B")
            JudgmentFactory(assignment=assignment, question="alignment", choice=choice)
    return study, scores


@pytest.mark.django_db
def test_judge_samples_stores_csv_scores_of_every_study_sample(judged_study, tmp_path):
    study, scores = judged_study
    path = tmp_path / "scores.csv"
    path.write_text("sample,score\n" + "".join(f"{s},{v}\n" for s, v in scores.items()), encoding="utf-8")
    call_command("judge_samples", str(study.pk), "--judge", f"csv:{path}", "--question", "alignment", "--name", "hps")
    stored = dict(JudgeScore.objects.filter(judge="hps", question="alignment").values_list("sample_id", "score"))
    assert stored == scores
    # Scoring again replaces, never duplicates.
    call_command("judge_samples", str(study.pk), "--judge", f"csv:{path}", "--question", "alignment", "--name", "hps")
    assert JudgeScore.objects.filter(judge="hps").count() == len(scores)


@pytest.mark.django_db
def test_study_results_show_ppi_beside_human_only_and_say_the_judge_covers_more_sets(
    judged_study, staff_client, django_assert_max_num_queries
):
    study, scores = judged_study
    judge_scores_record(judge="hps", question="alignment", scores=scores)
    with django_assert_max_num_queries(3):
        inputs = study_judge_inputs(study=study)
    assert len(inputs["sets"]) == 12 * 2 * SETS_PER_PROMPT
    results = study_results(study=study, judge_inputs=inputs)
    (table,) = results["ppi"]
    (row,) = table["rows"]
    human = next(r for r in results["rows"] if r["scope"] == "overall")
    assert row["error"] is None and row["case"] == "beyond"
    assert row["n"] == 72 and row["N"] == 12 * SETS_PER_PROMPT and row["N_beyond"] == 12 * (SETS_PER_PROMPT - 1)
    assert row["human_s"] == pytest.approx(human["score"])
    # The human-only interval beside PPI is the default row's own.
    assert (row["human_ci_low"], row["human_ci_high"]) == pytest.approx((human["ci_low"], human["ci_high"]))
    assert row["ci_low"] <= row["s"] <= row["ci_high"]
    assert 0 < row["agreement"] < 1
    html = staff_client.get(reverse("results:study-results", args=[study.pk])).content.decode()
    assert 'id="ppi"' in html and "beyond those humans rated" in html
    # Its own card after the human-only tables, not inside the downloads paragraph of the charts card.
    downloads = html[html.index('id="downloads"') : html.index("</p>", html.index('id="downloads"'))]
    assert 'id="ppi"' not in downloads and "ranking CSV" not in html[html.index('id="ppi"') :]
    assert json.dumps(row["lam"])  # a plain number


@pytest.mark.django_db
def test_a_judge_that_scores_only_what_humans_saw_is_said_to_save_almost_nothing(judged_study):
    study, scores = judged_study
    shown = set()
    for ids in study.comparisons.values_list("assignments__left_sample_ids", "assignments__right_sample_ids"):
        for side in ids:
            shown |= set(side)
    judge_scores_record(judge="hps", question="alignment", scores={s: v for s, v in scores.items() if s in shown})
    (row,) = study_results(study=study, judge_inputs=study_judge_inputs(study=study))["ppi"][0]["rows"]
    assert row["case"] == "same" and row["N_beyond"] == 0


@pytest.mark.django_db
def test_results_without_judge_scores_have_no_ppi_section(known_study, staff_client):
    html = staff_client.get(reverse("results:study-results", args=[known_study.study.pk])).content.decode()
    assert 'id="ppi"' not in html


@pytest.mark.django_db
def test_judge_samples_with_the_toy_world_checker_reads_each_sample_image(judged_study):
    # The factory's images are plain colour squares and its prompts are no toy-world captions: the checker refuses
    # them with a clear error rather than inventing scores.
    study, _ = judged_study
    with pytest.raises(CommandError):
        call_command("judge_samples", str(study.pk), "--judge", "toyworld", "--question", "alignment")
    assert not JudgeScore.objects.exists()


@pytest.mark.django_db
def test_judge_samples_scores_toy_world_images_by_their_captions():
    from imagen_core.toyworld import ToyWorld, render_scene

    study = StudyFactory(name="Toy", questions=["alignment"], samples_per_side=1)
    model = EvaluatedModelFactory(name="toy", version="1")
    study.evaluated_models.set([model])
    rng = np.random.default_rng(2)
    expected = {}
    for position, caption in enumerate(["a red circle", "three blue squares"], start=1):
        prompt = PromptFactory(prompt_set=study.prompt_set, position=position, category="Colors", text=caption)
        for index, good in enumerate((True, False)):
            pixels = render_scene(ToyWorld().scene_for(caption, rng)) if good else np.full((32, 32, 3), 128, np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            sample = SampleFactory(
                evaluated_model=model, prompt=prompt, index=index, image=ContentFile(buffer.getvalue(), name="x.png")
            )
            expected[sample.pk] = good
    call_command("judge_samples", str(study.pk), "--judge", "toyworld", "--question", "alignment")
    stored = dict(JudgeScore.objects.filter(judge="toyworld").values_list("sample_id", "score"))
    assert {pk: score == 1.0 for pk, score in stored.items()} == expected
