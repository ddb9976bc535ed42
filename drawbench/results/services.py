"""Writes of the results app: judge scores (the only table it owns)."""

from collections.abc import Mapping

from django.db import transaction

from drawbench.results.models import JudgeScore
from drawbench.studies.models import Question


@transaction.atomic
def judge_scores_record(*, judge: str, question: str, scores: Mapping[int, float]) -> int:
    """Store ``scores`` (sample id → score) of ``judge`` for ``question``, replacing earlier scores of those samples.
    Returns how many were stored."""
    if question not in Question.values:
        raise ValueError(f"Unknown question {question!r}; expected one of {', '.join(Question.values)}.")
    if not judge:
        raise ValueError("A judge score needs the judge's name.")
    JudgeScore.objects.filter(judge=judge, question=question, sample_id__in=list(scores)).delete()
    rows = [
        JudgeScore(judge=judge, question=question, sample_id=sample, score=float(value))
        for sample, value in scores.items()
    ]
    for row in rows:
        row.full_clean(exclude=["sample"], validate_unique=False)
    JudgeScore.objects.bulk_create(rows)
    return len(rows)
