"""Score a study's samples with an automatic judge and store the scores (for PPI beside the human-only results).

Runs in a worker or a shell, never in the web process: a CLIP judge imports torch."""

import numpy as np
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from drawbench.catalog.models import Sample
from drawbench.results.judges import SampleItem, judge_from_spec
from drawbench.results.services import judge_scores_record
from drawbench.studies.models import Question, Study
from drawbench.studies.selectors import study_samples


class Command(BaseCommand):
    help = (
        "Score every sample of a study's models on the study's prompts with an automatic judge (toyworld, "
        "clip:PATH with local CLIP weights, csv:PATH with 'sample,score' rows) and store the scores under the "
        "judge's name: toyworld, clip, or for a CSV the file's name without its extension (csv:hpsv2.csv is stored "
        "as hpsv2), unless --name says otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study_id", type=int)
        parser.add_argument("--judge", required=True, help="toyworld | clip:PATH | csv:PATH")
        parser.add_argument(
            "--question", choices=Question.values, required=True, help="The question it answers; the study must ask it."
        )
        parser.add_argument(
            "--name",
            help="Name to store the scores under (default: toyworld, clip, or a CSV file's stem: csv:hpsv2.csv → "
            "hpsv2). Scores of another metric need another name, or they replace these.",
        )

    def handle(self, *args, study_id: int, judge: str, question: str, name: str | None, **options):
        try:
            study = Study.objects.get(pk=study_id)
        except Study.DoesNotExist:
            raise CommandError(f"Study {study_id} does not exist.") from None
        # Scores of a question the study doesn't ask would be stored and never shown.
        if question not in study.questions:
            asked = ", ".join(study.questions) or "none"
            raise CommandError(f"Study {study.pk} does not ask {question!r}; its questions: {asked}.")
        try:
            scorer = judge_from_spec(judge)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            items = [_item(sample) for sample in study_samples(study=study).select_related("prompt")]
            if not items:
                raise CommandError(f"Study {study.pk} has no samples to score.")
            scorer.check_sample_ids({item.sample_id for item in items}, scope=f"a sample of study {study.pk}")
            scores = scorer.score_samples(items)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:  # a sample's image gone from storage or unreadable (read here from remote storage)
            raise CommandError(f"Cannot read a sample's image of study {study.pk}: {exc}") from None
        name = name or scorer.name
        try:
            stored = judge_scores_record(
                judge=name,
                question=question,
                scores={item.sample_id: float(score) for item, score in zip(items, scores, strict=True)},
            )
        except ValidationError as exc:
            raise CommandError(f"Cannot store scores as {name!r}: {'; '.join(exc.messages)}") from None
        self.stderr.write(f"Stored {stored} {name} scores ({question}) for study {study.pk}.")


def _item(sample: Sample) -> SampleItem:
    """A judge's view of a sample: its file where storage is a local folder, else its pixels read through storage."""
    try:
        return SampleItem(sample_id=sample.pk, prompt=sample.prompt.text, image_path=sample.image.path)
    except NotImplementedError:  # remote storage (S3): no local path
        from PIL import Image

        with sample.image.open("rb") as handle:
            pixels = np.asarray(Image.open(handle).convert("RGB"))
        return SampleItem(sample_id=sample.pk, prompt=sample.prompt.text, pixels=pixels)
