"""Reads for the dashboard's catalog pages: models with their sample counts, prompt sets with their categories, and
every generation run with its progress and the studies it serves."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone

from drawbench.backends.base import backend_class
from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet
from drawbench.dashboard.models import SampleImportJob
from drawbench.dashboard.selectors import CANCELLABLE, RESUMABLE
from drawbench.generation.models import GenerationRun
from drawbench.generation.selectors import generation_run_progress
from drawbench.studies.models import Study

RUNS_LISTED = 200

# The backends the dashboard offers by name; any other SampleBackend subclass may still be given by dotted path.
KNOWN_BACKENDS: dict[str, str] = {
    "drawbench.backends.diffusers_backend.DiffusersBackend": "diffusers (Stable Diffusion, SDXL, DeepFloyd IF, ...)",
    "drawbench.backends.imagen_backend.ImagenBackend": "imagen_core cascade",
    "drawbench.backends.imported.ImportBackend": "imported (samples made elsewhere)",
}


def backend_label(dotted_path: str) -> str:
    """ "imported" for a backend that generates nothing, else its class name (or the path if it does not import)."""
    try:
        cls = backend_class(dotted_path)
    except Exception:  # noqa: BLE001 - a list page shows a broken path rather than failing
        return dotted_path
    return "imported" if not cls.generates else cls.__name__


def backend_is_generated(dotted_path: str) -> bool:
    try:
        return backend_class(dotted_path).generates
    except Exception:  # noqa: BLE001
        return False


def known_backend_keys() -> list[dict[str, Any]]:
    """Per known backend: its path, label and config keys with their types, for the model form's help."""
    rows = []
    for path, label in KNOWN_BACKENDS.items():
        cls = backend_class(path)
        keys = [
            (key, " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,))))
            for key, kind in cls.config_types.items()
        ]
        rows.append({"path": path, "label": label, "keys": keys})
    return rows


def evaluated_model_rows() -> list[dict[str, Any]]:
    models = EvaluatedModel.objects.annotate(n_samples=Count("samples", distinct=True)).order_by("name", "version")
    return [{"model": m, "backend": backend_label(m.backend), "samples": m.n_samples} for m in models]


def prompt_set_rows() -> list[dict[str, Any]]:
    """Per prompt set: its number of prompts and its categories with their counts (in order of first appearance).
    Two queries."""
    sets = list(PromptSet.objects.order_by("slug"))
    categories: dict[int, list[tuple[str, int]]] = defaultdict(list)
    rows = (
        Prompt.objects.values("prompt_set_id", "category")
        .annotate(n=Count("id"), first=Min("position"))
        .order_by("prompt_set_id", "first")
    )
    for row in rows:
        categories[row["prompt_set_id"]].append((row["category"], row["n"]))
    return [
        {"prompt_set": s, "prompts": sum(n for _, n in categories[s.pk]), "categories": categories[s.pk]} for s in sets
    ]


def _studies_by_model_and_set(runs: list[GenerationRun]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    pairs = {(run.prompt_set_id, run.evaluated_model_id) for run in runs}
    if not pairs:
        return {}
    found: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    rows = (
        Study.objects.filter(prompt_set_id__in={p for p, _ in pairs}, evaluated_models__in={m for _, m in pairs})
        .values("pk", "name", "prompt_set_id", "evaluated_models")
        .order_by("pk")
    )
    for row in rows:
        key = (row["prompt_set_id"], row["evaluated_models"])
        if key in pairs:
            found[key].append({"id": row["pk"], "name": row["name"]})
    return found


def generation_run_rows(*, limit: int = RUNS_LISTED) -> list[dict[str, Any]]:
    """The latest runs, newest first: model, prompt set, status, done/total, failures, the studies using that model
    on that prompt set, and which actions apply. Two queries per run for its progress."""
    runs = list(
        GenerationRun.objects.select_related("evaluated_model", "prompt_set").order_by("-created_at", "-pk")[:limit]
    )
    studies = _studies_by_model_and_set(runs)
    rows = []
    for run in runs:
        progress = generation_run_progress(run=run)
        rows.append(
            {
                "run": run,
                **progress,
                "studies": studies.get((run.prompt_set_id, run.evaluated_model_id), []),
                "can_resume": progress["status"] in RESUMABLE,
                "can_cancel": progress["status"] in CANCELLABLE,
            }
        )
    return rows


IMPORT_JOBS_LISTED = 10
PHASES = {
    "extracting": "Extracting the zip",
    "checking": "Checking images",
    "storing": "Storing samples",
}


def sample_import_job_state(*, job: SampleImportJob) -> dict[str, Any]:
    """What the job's page shows and its poll returns: status, phase, done/total, and the report or the problems."""
    finished = job.status in (SampleImportJob.Status.DONE, SampleImportJob.Status.FAILED)
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "finished": finished,
        "phase": job.phase,
        "phase_display": PHASES.get(job.phase, ""),
        "done": job.done,
        "total": job.total,
        "percent": round(100 * job.done / job.total) if job.total else (100 if job.status == "done" else 0),
        "waiting_s": round((timezone.now() - job.created_at).total_seconds()) if job.status == "pending" else None,
        "report": job.report or None,
        "problems": job.problems,
        "problem_count": job.problem_count,
    }


def sample_import_job_rows(*, limit: int = IMPORT_JOBS_LISTED) -> list[SampleImportJob]:
    return list(SampleImportJob.objects.select_related("evaluated_model", "prompt_set")[:limit])
