"""Score a study's samples with an automatic judge and store the scores (for PPI beside the human-only results).

Runs in a worker or a shell, never in the web process: a CLIP judge imports torch."""

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser

from drawbench.catalog.models import Sample
from drawbench.results.judges import SampleItem, judge_from_spec
from drawbench.results.services import judge_scores_record
from drawbench.studies.models import Question, Study


class Command(BaseCommand):
    help = (
        "Score every sample of a study's models on the study's prompts with an automatic judge (toyworld, "
        "clip:PATH with local CLIP weights, csv:PATH with 'sample,score' rows) and store the scores."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("study_id", type=int)
        parser.add_argument("--judge", required=True, help="toyworld | clip:PATH | csv:PATH")
        parser.add_argument("--question", choices=Question.values, required=True, help="The question it answers.")
        parser.add_argument("--name", help="Name to store the scores under (default: the judge's kind).")

    def handle(self, *args, study_id: int, judge: str, question: str, name: str | None, **options):
        try:
            study = Study.objects.get(pk=study_id)
        except Study.DoesNotExist:
            raise CommandError(f"Study {study_id} does not exist.") from None
        try:
            scorer = judge_from_spec(judge)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        samples = Sample.objects.filter(
            prompt__prompt_set=study.prompt_set, evaluated_model__in=study.evaluated_models.all()
        ).select_related("prompt")
        if study.categories:
            samples = samples.filter(prompt__category__in=study.categories)
        items = [_item(sample) for sample in samples.order_by("id")]
        if not items:
            raise CommandError(f"Study {study.pk} has no samples to score.")
        try:
            scores = scorer.score_samples(items)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        stored = judge_scores_record(
            judge=name or scorer.name,
            question=question,
            scores={item.sample_id: float(score) for item, score in zip(items, scores, strict=True)},
        )
        self.stderr.write(f"Stored {stored} {name or scorer.name} scores ({question}) for study {study.pk}.")


def _item(sample: Sample) -> SampleItem:
    """A judge's view of a sample: its file where storage is a local folder, else its pixels read through storage."""
    try:
        return SampleItem(sample_id=sample.pk, prompt=sample.prompt.text, image_path=sample.image.path)
    except NotImplementedError:  # remote storage (S3): no local path
        from PIL import Image

        with sample.image.open("rb") as handle:
            pixels = np.asarray(Image.open(handle).convert("RGB"))
        return SampleItem(sample_id=sample.pk, prompt=sample.prompt.text, pixels=pixels)
