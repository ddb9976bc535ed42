"""Automatic judges: a score for each sample (one image of one prompt), and from those a preference for each
comparison (two sets of samples of one prompt), on the scale of a human answer (1 for A, ½ for a tie, 0 for B).

A judge is a small class whose docstrings are the contract: child classes implement ``score_samples``;
``score_comparisons`` has a default that they may override. Heavy imports (torch, transformers, the toy world's
checker) happen inside a judge's methods, never at import: the web process imports this module without torch.

Judges are chosen by a spec string (``judge_from_spec``): ``toyworld``, ``clip:/path/to/local/clip`` or
``csv:/path/to/scores.csv``. Their scores only ever enter results through PPI (``intervals.ppi``), which shows them
beside the human-only result and gives a useless judge a weight near zero.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# CLIPScore's rescaling (Hessel et al. 2021): w·max(cos, 0) with w = 2.5.
CLIP_SCORE_WEIGHT = 2.5


@dataclass(frozen=True)
class SampleItem:
    """What a judge sees of one sample: its id, its prompt, and its image (a file or pixels already loaded)."""

    sample_id: int
    prompt: str
    image_path: str | None = None
    pixels: np.ndarray | None = None  # (H, W, 3) uint8

    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 pixels."""
        if self.pixels is not None:
            return np.asarray(self.pixels)
        if self.image_path is None:
            raise ValueError(f"Sample {self.sample_id} has neither pixels nor an image file.")
        from PIL import Image

        with Image.open(self.image_path) as image:
            return np.asarray(image.convert("RGB"))


class Judge:
    """The contract of an automatic judge.

    Methods child classes must implement:

    - ``score_samples(samples)``: a float per sample, higher meaning better for the question judged. Scores need
      not be calibrated or bounded: PPI fits their weight.

    Methods child classes may override:

    - ``score_comparisons(sets_a, sets_b)``: the judge's preference for each comparison, in [0, 1] like a human
      answer. By default the share of (image of A, image of B) pairs in which A's image scores higher, a tie
      counting ½: the probability that a random image of set A beats a random image of set B.
    - ``check_sample_ids(sample_ids, scope=...)``: raise ValueError when the judge's own data names a sample outside
      ``sample_ids`` (every sample of the study judged, ``scope`` saying so, e.g. "a sample of study 3"). By default
      nothing to check: a judge that computes its scores knows no samples of its own.

    Errors a judge cannot work past (a missing file, a folder without weights, a bad row) are ValueErrors naming the
    file, and where there is one the line and field, so that the command that runs it can say what is wrong.
    """

    name = "judge"

    def score_samples(self, samples: Sequence[SampleItem]) -> np.ndarray:
        raise NotImplementedError("subclasses of Judge must provide score_samples()")

    def check_sample_ids(self, sample_ids: Collection[int], *, scope: str) -> None:
        return None

    def score_comparisons(
        self, sets_a: Sequence[Sequence[SampleItem]], sets_b: Sequence[Sequence[SampleItem]]
    ) -> np.ndarray:
        if len(sets_a) != len(sets_b):
            raise ValueError("score_comparisons needs as many sets for A as for B.")
        flat = [item for group in (*sets_a, *sets_b) for item in group]
        scores = dict(zip((item.sample_id for item in flat), self.score_samples(flat), strict=True))
        return np.array(
            [
                comparison_score([scores[item.sample_id] for item in a], [scores[item.sample_id] for item in b])
                for a, b in zip(sets_a, sets_b, strict=True)
            ]
        )


def comparison_score(scores_a: Sequence[float], scores_b: Sequence[float]) -> float:
    """P(a random image of A scores above a random image of B), ties ½ (the Mann–Whitney statistic over n_a·n_b)."""
    a = np.asarray(scores_a, dtype=float)[:, None]
    b = np.asarray(scores_b, dtype=float)[None, :]
    if a.size == 0 or b.size == 0:
        raise ValueError("A comparison needs at least one sample on each side.")
    return float(((a > b) + 0.5 * (a == b)).mean())


class ToyWorldJudge(Judge):
    """The toy world's checker (``imagen_core.toyworld.check_image``): the share of the aspects the caption asks
    for (colour, shape, count, position) that the image gets right. Exact for the toy models' captions."""

    name = "toyworld"

    def score_samples(self, samples: Sequence[SampleItem]) -> np.ndarray:
        from imagen_core.toyworld import check_image

        scores = []
        for item in samples:
            result = check_image(item.image(), item.prompt)
            asked = [v for v in (result.colour, result.shape, result.count, result.position) if v is not None]
            scores.append(sum(asked) / len(asked))
        return np.array(scores, dtype=float)


class ClipJudge(Judge):
    """CLIPScore (Hessel et al. 2021) with CLIP weights from a local folder (``CLIPModel.save_pretrained``):
    2.5·max(cos, 0) between the image and its prompt. Never downloads: the folder holds the model and its processor."""

    name = "clip"

    def __init__(self, path: str | Path, *, batch_size: int = 32) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"CLIP judge: {self.path} is not a folder with local CLIP weights.")
        # Checked here, before any image is read: a folder that save_pretrained never wrote to has no config.json.
        if not (self.path / "config.json").is_file():
            raise ValueError(
                f"CLIP judge: {self.path} has no config.json: not a folder written by CLIPModel.save_pretrained."
            )
        self.batch_size = batch_size
        self._loaded = None

    def _model(self):
        if self._loaded is None:
            from transformers import CLIPModel, CLIPProcessor

            # transformers raises OSError for a folder that lacks the weights or the processor's files.
            try:
                model = CLIPModel.from_pretrained(self.path, local_files_only=True).eval()
                processor = CLIPProcessor.from_pretrained(self.path, local_files_only=True)
            except OSError as exc:
                raise ValueError(f"CLIP judge: cannot load CLIP weights from {self.path}: {exc}") from exc
            self._loaded = model, processor
        return self._loaded

    def score_samples(self, samples: Sequence[SampleItem]) -> np.ndarray:
        import torch

        model, processor = self._model()
        scores = []
        for start in range(0, len(samples), self.batch_size):
            batch = samples[start : start + self.batch_size]
            inputs = processor(
                text=[item.prompt for item in batch],
                images=[item.image() for item in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
            )
            with torch.no_grad():
                image = model.get_image_features(pixel_values=inputs["pixel_values"])
                text = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            image = getattr(image, "pooler_output", image)
            text = getattr(text, "pooler_output", text)
            cosine = torch.nn.functional.cosine_similarity(image, text, dim=-1)
            scores.append((CLIP_SCORE_WEIGHT * cosine.clamp(min=0)).numpy())
        return np.concatenate(scores).astype(float) if scores else np.zeros(0)


class CsvScoreJudge(Judge):
    """Per-sample scores computed elsewhere (HPSv2, ImageReward, PickScore, ...), from a CSV with the header
    ``sample,score``: sample is the sample's id. The judge is named after the file (``hpsv2.csv`` → ``hpsv2``), so
    that two metrics from two files are stored apart. A UTF-8 byte order mark (Excel writes one) is allowed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self.scores: dict[int, float] = {}
        self.lines: dict[int, int] = {}  # sample id → the line that scores it, for errors
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as handle:
                self._read(csv.DictReader(handle, skipinitialspace=True))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
        except OSError as exc:
            raise ValueError(f"CSV judge: cannot read {self.path}: {exc.strerror or exc}.") from None

    def _read(self, reader: csv.DictReader) -> None:
        if reader.fieldnames is None or not {"sample", "score"} <= set(reader.fieldnames):
            raise ValueError(f"{self.path}: expected a header 'sample,score', got {reader.fieldnames}.")
        for row in reader:
            line = reader.line_num
            sample = self._field(row, "sample", line, int, "is not a sample id")
            score = self._field(row, "score", line, float, "is not a number")
            if not np.isfinite(score):
                raise ValueError(f'{self.path}, line {line}, field "score": "{row["score"]}" is not a finite number.')
            if sample in self.scores:
                raise ValueError(f"{self.path}, line {line}: sample {sample} is scored twice.")
            self.scores[sample] = score
            self.lines[sample] = line

    def _field(self, row: dict, field: str, line: int, parse: Callable[[str], float], problem: str) -> float:
        value = row[field]
        if value is None or not value.strip():
            raise ValueError(f'{self.path}, line {line}, field "{field}" is empty.')
        try:
            return parse(value)
        except ValueError:
            raise ValueError(f'{self.path}, line {line}, field "{field}": "{value}" {problem}.') from None

    def check_sample_ids(self, sample_ids: Collection[int], *, scope: str) -> None:
        """A row for a sample outside ``sample_ids`` is a mistyped id or the wrong file: refused, never dropped."""
        unknown = sorted((line, sample) for sample, line in self.lines.items() if sample not in sample_ids)
        if unknown:
            line, sample = unknown[0]
            more = f" (and {len(unknown) - 1} more such rows)" if len(unknown) > 1 else ""
            raise ValueError(f"{self.path}, line {line}: sample {sample} is not {scope}{more}.")

    def score_samples(self, samples: Sequence[SampleItem]) -> np.ndarray:
        missing = [item.sample_id for item in samples if item.sample_id not in self.scores]
        if missing:
            raise ValueError(f"{self.path} has no score for sample(s) {', '.join(map(str, missing[:5]))}.")
        return np.array([self.scores[item.sample_id] for item in samples], dtype=float)


def judge_from_spec(spec: str) -> Judge:
    """``toyworld``, ``clip:PATH`` (local CLIP weights) or ``csv:PATH`` (a ``sample,score`` file)."""
    kind, _, argument = spec.partition(":")
    if kind == "toyworld" and not argument:
        return ToyWorldJudge()
    if kind == "clip" and argument:
        return ClipJudge(argument)
    if kind == "csv" and argument:
        return CsvScoreJudge(argument)
    raise ValueError(f"Unknown judge {spec!r}: expected 'toyworld', 'clip:PATH' or 'csv:PATH'.")
