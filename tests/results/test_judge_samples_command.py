"""judge_samples refuses what it cannot store honestly, with a message that names the file, line, field or question
at fault, and stores nothing then: a missing or unreadable judge, a score row for a sample outside the study, a
question the study doesn't ask. A CSV's scores are stored under its file's name, so two metrics never collide."""

import re

import pytest
from django.core.management import CommandError, call_command

from drawbench.results.models import JudgeScore
from tests.factories import EvaluatedModelFactory, PromptFactory, SampleFactory, StudyFactory


@pytest.fixture
def small_study(db):
    """A study asking alignment only, one model, two prompts with two samples each; and the ids of those samples."""
    study = StudyFactory(questions=["alignment"])
    model = EvaluatedModelFactory()
    study.evaluated_models.set([model])
    ids = []
    for position in (1, 2):
        prompt = PromptFactory(prompt_set=study.prompt_set, position=position)
        ids += [SampleFactory(evaluated_model=model, prompt=prompt, index=index).pk for index in (0, 1)]
    return study, ids


def write_scores(path, rows, *, encoding="utf-8"):
    path.write_text("sample,score\n" + "".join(f"{sample},{score}\n" for sample, score in rows), encoding=encoding)
    return path


def judge(study, spec, *extra):
    call_command("judge_samples", str(study.pk), "--judge", spec, "--question", "alignment", *extra)


def test_judge_samples_names_a_csv_file_that_does_not_exist(small_study, tmp_path):
    study, _ = small_study
    missing = tmp_path / "missing.csv"
    with pytest.raises(CommandError, match=re.escape(f"cannot read {missing}: No such file or directory")):
        judge(study, f"csv:{missing}")
    assert not JudgeScore.objects.exists()


def test_judge_samples_names_a_clip_folder_without_weights(small_study, tmp_path):
    study, _ = small_study
    with pytest.raises(CommandError, match=re.escape(f"CLIP judge: {tmp_path} has no config.json")):
        judge(study, f"clip:{tmp_path}")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    transformers.CLIPConfig().save_pretrained(tmp_path)  # a config, and no weights beside it
    with pytest.raises(CommandError, match=re.escape(f"CLIP judge: cannot load CLIP weights from {tmp_path}")):
        judge(study, f"clip:{tmp_path}")
    assert not JudgeScore.objects.exists()


def test_judge_samples_refuses_a_score_for_a_sample_outside_the_study(small_study, tmp_path):
    study, ids = small_study
    other_study_sample = SampleFactory().pk  # a real sample, of another prompt set
    rows = [(i, 0.5) for i in ids]
    path = write_scores(tmp_path / "scores.csv", [*rows[:2], (999999, 1.0), *rows[2:], (other_study_sample, 0.0)])
    message = f"{path}, line 4: sample 999999 is not a sample of study {study.pk} (and 1 more such rows)."
    with pytest.raises(CommandError, match=re.escape(message)):
        judge(study, f"csv:{path}")
    assert not JudgeScore.objects.exists()
    write_scores(path, rows)
    judge(study, f"csv:{path}")
    assert JudgeScore.objects.count() == len(ids)


def test_judge_samples_names_the_field_and_value_that_is_not_a_number(small_study, tmp_path):
    study, ids = small_study
    path = write_scores(tmp_path / "scores.csv", [(ids[0], 0.5), (ids[1], "abc")])
    with pytest.raises(CommandError) as error:
        judge(study, f"csv:{path}")
    assert str(error.value) == f'{path}, line 3, field "score": "abc" is not a number.'


def test_judge_samples_reads_a_csv_saved_by_excel_with_a_byte_order_mark(small_study, tmp_path):
    study, ids = small_study
    path = write_scores(tmp_path / "scores.csv", [(i, i / 10) for i in ids], encoding="utf-8-sig")
    judge(study, f"csv:{path}")
    assert dict(JudgeScore.objects.values_list("sample_id", "score")) == {i: i / 10 for i in ids}


def test_judge_samples_stores_two_csv_metrics_apart_under_their_file_names(small_study, tmp_path):
    study, ids = small_study
    judge(study, f"csv:{write_scores(tmp_path / 'hpsv2.csv', [(i, 1.0) for i in ids])}")
    judge(study, f"csv:{write_scores(tmp_path / 'pickscore.csv', [(i, 2.0) for i in ids])}")
    judge(study, f"csv:{tmp_path / 'pickscore.csv'}", "--name", "PickScore v1")
    stored = {}
    for name, score in JudgeScore.objects.values_list("judge", "score"):
        stored.setdefault(name, set()).add(score)
    assert stored == {"hpsv2": {1.0}, "pickscore": {2.0}, "PickScore v1": {2.0}}
    assert JudgeScore.objects.count() == 3 * len(ids)


def test_judge_samples_refuses_a_question_the_study_does_not_ask(small_study, tmp_path):
    study, ids = small_study
    path = write_scores(tmp_path / "scores.csv", [(i, 0.5) for i in ids])
    with pytest.raises(
        CommandError, match=re.escape(f"Study {study.pk} does not ask 'fidelity'; its questions: alignment.")
    ):
        call_command("judge_samples", str(study.pk), "--judge", f"csv:{path}", "--question", "fidelity")
    assert not JudgeScore.objects.exists()


def test_judge_samples_refuses_a_name_too_long_to_store(small_study, tmp_path):
    study, ids = small_study
    path = write_scores(tmp_path / "scores.csv", [(i, 0.5) for i in ids])
    with pytest.raises(CommandError, match="Cannot store scores as 'xxx"):
        judge(study, f"csv:{path}", "--name", "x" * 101)
    assert not JudgeScore.objects.exists()


def test_judge_samples_names_a_sample_image_gone_from_storage(small_study):
    study, ids = small_study
    from drawbench.catalog.models import Sample

    gone = Sample.objects.get(pk=ids[0])
    gone.image.storage.delete(gone.image.name)
    with pytest.raises(CommandError, match=f"Cannot read a sample's image of study {study.pk}"):
        judge(study, "toyworld")
    assert not JudgeScore.objects.exists()
