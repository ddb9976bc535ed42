"""Automatic judges (drawbench.results.judges): the toy world's checker, CLIP score on local weights (a tiny random
CLIP built offline), per-sample scores from a CSV, and the comparison score built from sample scores."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from drawbench.results import judges

CAPTIONS = ["a red circle", "three blue squares", "a green triangle to the left of a yellow circle"]


def toy_items(captions, *, blank: bool = False):
    from imagen_core.toyworld import ToyWorld, render_scene

    world = ToyWorld()
    rng = np.random.default_rng(0)
    items = []
    for index, caption in enumerate(captions):
        pixels = np.full((32, 32, 3), 128, np.uint8) if blank else render_scene(world.scene_for(caption, rng))
        items.append(judges.SampleItem(sample_id=index, prompt=caption, pixels=pixels))
    return items


def test_judges_module_imports_neither_torch_nor_the_toy_world():
    code = (
        "import sys; import drawbench.results.judges; "
        "print(any(name == 'torch' or name.startswith(('torch.', 'imagen_core')) for name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_toy_world_judge_scores_ground_truth_images_one_and_blank_images_low():
    judge = judges.ToyWorldJudge()
    assert list(judge.score_samples(toy_items(CAPTIONS))) == [1.0, 1.0, 1.0]
    assert (judge.score_samples(toy_items(CAPTIONS, blank=True)) < 0.5).all()


def test_comparison_score_is_the_chance_that_a_random_image_of_a_beats_one_of_b():
    assert judges.comparison_score([1.0, 1.0], [0.0, 0.0]) == 1.0
    assert judges.comparison_score([0.0], [0.0]) == 0.5
    assert judges.comparison_score([2.0, 0.0], [1.0]) == 0.5
    judge = judges.ToyWorldJudge()
    good, blank = toy_items(CAPTIONS), toy_items(CAPTIONS, blank=True)
    blank = [judges.SampleItem(sample_id=10 + i.sample_id, prompt=i.prompt, pixels=i.pixels) for i in blank]
    assert list(judge.score_comparisons([good], [blank])) == [1.0]
    assert list(judge.score_comparisons([blank], [good])) == [0.0]


def test_csv_judge_reads_sample_scores_and_names_what_is_missing(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("sample,score\n1,0.25\n2,-1.5\n", encoding="utf-8")
    judge = judges.judge_from_spec(f"csv:{path}")
    items = [judges.SampleItem(sample_id=2, prompt="x"), judges.SampleItem(sample_id=1, prompt="x")]
    assert list(judge.score_samples(items)) == [-1.5, 0.25]
    with pytest.raises(ValueError, match="no score for sample"):
        judge.score_samples([judges.SampleItem(sample_id=3, prompt="x")])
    path.write_text("id,value\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a header 'sample,score'"):
        judges.CsvScoreJudge(path)
    path.write_text("sample,score\n1,2\n1,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: sample 1 is scored twice"):
        judges.CsvScoreJudge(path)


def test_csv_judge_names_the_field_and_value_that_is_not_a_number(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("sample,score\n1,0.5\n2,abc\n", encoding="utf-8")
    with pytest.raises(ValueError) as error:
        judges.CsvScoreJudge(path)
    assert str(error.value) == f'{path}, line 3, field "score": "abc" is not a number.'
    path.write_text("sample,score\n1,0.5\nx7,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match='line 3, field "sample": "x7" is not a sample id'):
        judges.CsvScoreJudge(path)
    path.write_text("sample,score\n1\n", encoding="utf-8")
    with pytest.raises(ValueError, match='line 2, field "score" is empty'):
        judges.CsvScoreJudge(path)


def test_csv_judge_reads_a_file_with_a_byte_order_mark_and_spaces_after_commas(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("sample, score\n1, 0.25\n", encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert judges.CsvScoreJudge(path).scores == {1: 0.25}


def test_csv_judge_is_named_after_its_file(tmp_path):
    (tmp_path / "hpsv2.csv").write_text("sample,score\n1,0.25\n", encoding="utf-8")
    assert judges.judge_from_spec(f"csv:{tmp_path / 'hpsv2.csv'}").name == "hpsv2"


def test_csv_judge_refuses_a_row_for_a_sample_outside_those_judged(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("sample,score\n1,0.25\n999999,1\n2,0.5\n888888,0\n", encoding="utf-8")
    judge = judges.CsvScoreJudge(path)
    judge.check_sample_ids({1, 2, 999999, 888888}, scope="a sample of study 3")
    with pytest.raises(ValueError) as error:
        judge.check_sample_ids({1, 2}, scope="a sample of study 3")
    assert str(error.value) == f"{path}, line 3: sample 999999 is not a sample of study 3 (and 1 more such rows)."


def test_csv_judge_says_which_file_it_cannot_read(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"cannot read {tmp_path / 'missing.csv'}: No such file")):
        judges.judge_from_spec(f"csv:{tmp_path / 'missing.csv'}")
    with pytest.raises(ValueError, match=re.escape(f"cannot read {tmp_path}: Is a directory")):
        judges.judge_from_spec(f"csv:{tmp_path}")
    (tmp_path / "latin1.csv").write_bytes("sample,score\n1,0.5 \xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.csv: not UTF-8 text"):
        judges.judge_from_spec(f"csv:{tmp_path / 'latin1.csv'}")


def test_unknown_judge_spec_is_refused():
    with pytest.raises(ValueError, match="Unknown judge 'clip'"):
        judges.judge_from_spec("clip")


@pytest.fixture
def tiny_clip(tmp_path):
    """A random CLIP small enough to build in a second, with a character-level tokenizer: nothing downloaded."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    characters = sorted(set("abcdefghijklmnopqrstuvwxyz"))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in characters:
        vocab[character] = len(vocab)
        vocab[character + "</w>"] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = transformers.CLIPTokenizer(
        str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), pad_token="<|endoftext|>"
    )
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = transformers.CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    import torch

    torch.manual_seed(0)
    folder = tmp_path / "clip"
    transformers.CLIPModel(config).save_pretrained(folder)
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_clip_judge_scores_samples_from_local_weights(tiny_clip):
    judge = judges.judge_from_spec(f"clip:{tiny_clip}")
    items = toy_items(CAPTIONS)
    scores = judge.score_samples(items)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert ((0 <= scores) & (scores <= judges.CLIP_SCORE_WEIGHT)).all()
    np.testing.assert_allclose(judge.score_samples(items), scores)  # deterministic: eval mode, no dropout
    assert 0.0 <= judge.score_comparisons([items[:2]], [items[2:]])[0] <= 1.0


def test_clip_judge_refuses_a_folder_that_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match="is not a folder with local CLIP weights"):
        judges.ClipJudge(tmp_path / "missing")


def test_clip_judge_refuses_a_folder_without_a_saved_model(tmp_path):
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} has no config.json")):
        judges.ClipJudge(tmp_path)


def test_clip_judge_says_which_folder_lacks_the_weights(tiny_clip):
    for weights in [*tiny_clip.glob("*.safetensors"), *tiny_clip.glob("*.bin")]:
        weights.unlink()
    judge = judges.judge_from_spec(f"clip:{tiny_clip}")
    with pytest.raises(ValueError, match=re.escape(f"cannot load CLIP weights from {tiny_clip}")):
        judge.score_samples(toy_items(CAPTIONS[:1]))
