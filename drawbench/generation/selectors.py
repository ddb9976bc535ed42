"""Reads of the generation app: which prompts a run covers and how far it has got."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from drawbench.catalog.models import Prompt, Sample
from drawbench.generation.models import GenerationFailure, GenerationRun


def generation_run_prompts(*, run: GenerationRun) -> QuerySet[Prompt]:
    """The prompts of the run: its prompt set, narrowed to its categories and prompt ids when it names some."""
    prompts = Prompt.objects.filter(prompt_set_id=run.prompt_set_id)
    if run.categories:
        prompts = prompts.filter(category__in=run.categories)
    if run.prompt_ids:
        prompts = prompts.filter(pk__in=run.prompt_ids)
    return prompts.order_by("position")


# Model time below which the overhead says nothing (the dashboard shows "n/a (model time < 1 s)").
OVERHEAD_MIN_MODEL_SECONDS = 1.0


def generation_run_progress(*, run: GenerationRun) -> dict[str, Any]:
    """done / total samples (counted from Sample rows), failed prompts, images/s since the start, ETA, status, the
    queue its tasks went to, and the platform's overhead: the share of task time not spent in the model (0 to 1).

    Two queries. ``images_per_s`` counts samples made since the run (re)started, so a resumed run's rate is its
    own; it and ``eta_s`` are None until there is something to measure, ``overhead`` until the model has run for
    OVERHEAD_MIN_MODEL_SECONDS (below that, timer resolution and start-up swamp it: 73,636% of a 1 ms model call).
    """
    state = (
        GenerationRun.objects.filter(pk=run.pk)
        .annotate(failed=Count("failures"))
        .values("status", "total", "started_at", "finished_at", "failed", "queue", "model_seconds", "task_seconds")
        .get()
    )
    samples = Sample.objects.filter(
        evaluated_model_id=run.evaluated_model_id,
        prompt__in=generation_run_prompts(run=run),
        index__lt=run.samples_per_prompt,
    )
    started_at = state["started_at"]
    aggregates = {"done": Count("pk")}
    if started_at:
        aggregates["made"] = Count("pk", filter=Q(created_at__gte=started_at))
    counts = samples.aggregate(**aggregates)
    done, total = counts["done"], state["total"]
    images_per_s = eta_s = None
    if counts.get("made"):
        elapsed = ((state["finished_at"] or timezone.now()) - started_at).total_seconds()
        if elapsed > 0:
            images_per_s = counts["made"] / elapsed
            if state["status"] == GenerationRun.Status.RUNNING:
                eta_s = max(total - done, 0) / images_per_s
    model_seconds, task_seconds = state["model_seconds"], state["task_seconds"]
    measurable = model_seconds >= OVERHEAD_MIN_MODEL_SECONDS and task_seconds > 0
    return {
        "done": done,
        "total": total,
        "failed": state["failed"],
        "images_per_s": images_per_s,
        "eta_s": eta_s,
        "status": state["status"],
        "queue": state["queue"],
        "overhead": max(task_seconds - model_seconds, 0) / task_seconds if measurable else None,
    }


def generation_failures_by_run(*, run_ids: list[int], limit: int = 50) -> dict[int, dict[str, Any]]:
    """Per run: its failed prompts (position, category, text, message) in prompt order, at most ``limit``, and how
    many more there are. Two queries whatever the number of runs."""
    counts = dict(
        GenerationFailure.objects.filter(run_id__in=run_ids)
        .values("run_id")
        .annotate(n=Count("pk"))
        .values_list("run_id", "n")
    )
    shown: dict[int, dict[str, Any]] = {run_id: {"failures": [], "more": 0} for run_id in run_ids}
    failures = (
        GenerationFailure.objects.filter(run_id__in=[run_id for run_id, n in counts.items() if n])
        .select_related("prompt")
        .order_by("run_id", "prompt__position")
    )
    for failure in failures:
        entry = shown[failure.run_id]
        if len(entry["failures"]) < limit:
            entry["failures"].append(
                {
                    "position": failure.prompt.position,
                    "category": failure.prompt.category,
                    "text": failure.prompt.text,
                    "message": failure.message,
                }
            )
    for run_id, n in counts.items():
        shown[run_id]["more"] = max(n - limit, 0)
    return shown
