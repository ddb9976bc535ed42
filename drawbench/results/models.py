"""The results app's one table: automatic judges' scores of samples. Results themselves are computed from judgments
on demand (see stats.py); judge scores enter them only through PPI, beside the human-only result."""

from django.db import models

from drawbench.catalog.models import Sample
from drawbench.studies.models import Question


class JudgeScore(models.Model):
    """One automatic judge's score of one sample for one question (``judges.Judge.score_samples``)."""

    judge = models.CharField(
        max_length=100, help_text="The judge's name, e.g. clip, toyworld, hpsv2 (a CSV judge: its file's stem)."
    )
    question = models.CharField(max_length=16, choices=Question.choices)
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="judge_scores")
    score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["judge", "question", "sample"], name="judge_score_unique_sample"),
        ]

    def __str__(self) -> str:
        return f"{self.judge} {self.question} sample {self.sample_id}: {self.score:g}"
