"""What the dashboard shows: per study, its rating progress (overall and per category), its raters and flags, the time
it may take to finish, the state of its samples and generation runs, and which actions apply now."""

from datetime import datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Min, Q
from django.utils import timezone

from drawbench.backends.base import backend_class
from drawbench.catalog.models import Prompt, PromptSet, Sample
from drawbench.generation.models import GenerationRun
from drawbench.generation.selectors import (
    OVERHEAD_MIN_MODEL_SECONDS,
    generation_failures_by_run,
    generation_run_progress,
)
from drawbench.studies.models import Judgment, Rater, RaterFlag, Study
from drawbench.studies.selectors import study_progress

# The answer rate behind "time to finish" is measured over this much of the recent past (or since the study opened,
# if later), and only once it spans RATE_MIN_SECONDS with RATE_MIN_JUDGMENTS judgments: before that it is unknown.
RATE_WINDOW = timedelta(minutes=15)
RATE_MIN_SECONDS = 60
RATE_MIN_JUDGMENTS = 3


def study_list_rows() -> list[dict]:
    studies = Study.objects.select_related("prompt_set").prefetch_related("evaluated_models")
    return [{"study": s, "progress": study_progress(study=s)} for s in studies]


def prompt_set_category_groups(*, checked: set[str] = frozenset()) -> list[dict]:
    """Per prompt set (by slug): its categories in the order they first appear, each with its prompt count and the
    value its checkbox posts ("<prompt set id>:<category>"). One query for the categories, one for the sets."""
    rows = (
        Prompt.objects.values("prompt_set_id", "category")
        .annotate(n=Count("id"), first=Min("position"))
        .order_by("prompt_set_id", "first")
    )
    groups = {
        prompt_set.pk: {"prompt_set": prompt_set, "n_prompts": 0, "categories": []}
        for prompt_set in PromptSet.objects.order_by("slug")
    }
    for row in rows:
        group = groups[row["prompt_set_id"]]
        value = f"{row['prompt_set_id']}:{row['category']}"
        group["categories"].append(
            {"name": row["category"], "n": row["n"], "value": value, "checked": value in checked}
        )
        group["n_prompts"] += row["n"]
    return list(groups.values())


def _is_generated(model) -> bool:
    try:
        return backend_class(model.backend).generates
    except ImproperlyConfigured:
        return False


def study_samples_state(*, study: Study) -> list[dict]:
    """Per evaluated model: samples usable for the study's prompts (at most samples_per_side per prompt) against those
    needed, and whether the model generates its samples (else they are imported)."""
    prompt_ids = list(study.comparisons.values_list("prompt_id", flat=True).distinct())
    k = study.samples_per_side
    needed_per_model = len(prompt_ids) * k
    models = list(study.evaluated_models.order_by("name", "version"))
    present: dict[int, int] = {}
    for model_id, n in (
        Sample.objects.filter(prompt_id__in=prompt_ids, evaluated_model__in=models)
        .values_list("evaluated_model", "prompt")
        .annotate(n=Count("id"))
        .values_list("evaluated_model", "n")
        .order_by()
    ):
        present[model_id] = present.get(model_id, 0) + min(n, k)
    return [
        {
            "model": str(model),
            "present": present.get(model.pk, 0),
            "needed": needed_per_model,
            "generated": _is_generated(model),
        }
        for model in models
    ]


RUNS_SHOWN = 10
RESUMABLE = {GenerationRun.Status.PENDING, GenerationRun.Status.FAILED, GenerationRun.Status.CANCELLED}
CANCELLABLE = {GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING}


def study_generation_runs(*, study: Study):
    """Generation runs of the study's models on its prompt set, newest first."""
    return GenerationRun.objects.filter(
        prompt_set=study.prompt_set, evaluated_model__in=study.evaluated_models.all()
    ).select_related("evaluated_model")


def study_generation_run(*, study: Study, run_id: int) -> GenerationRun | None:
    """Run ``run_id`` if it belongs to the study (one of its models on its prompt set), else None."""
    return study_generation_runs(study=study).filter(pk=run_id).first()


def overhead_text(*, overhead: float | None, model_seconds: float) -> str:
    """The overhead column: a share of task time, or why there is none."""
    if overhead is not None:
        return f"{100 * overhead:.0f}% of task time"
    if 0 < model_seconds < OVERHEAD_MIN_MODEL_SECONDS:
        return f"n/a (model time < {OVERHEAD_MIN_MODEL_SECONDS:g} s)"
    return "—"


def study_runs_state(*, study: Study) -> list[dict]:
    """The latest runs with their live progress (done/total, images/s, ETA, failures, overhead), the prompts that
    failed with their messages, and which actions apply."""
    runs = list(study_generation_runs(study=study)[:RUNS_SHOWN])
    failures = generation_failures_by_run(run_ids=[run.pk for run in runs])
    rows = []
    for run in runs:
        progress = generation_run_progress(run=run)
        rows.append(
            {
                "id": run.pk,
                "model": str(run.evaluated_model),
                **progress,
                "overhead_text": overhead_text(overhead=progress["overhead"], model_seconds=run.model_seconds),
                "failures": failures[run.pk]["failures"],
                "more_failures": failures[run.pk]["more"],
                "can_resume": progress["status"] in RESUMABLE,
                "can_cancel": progress["status"] in CANCELLABLE,
            }
        )
    return rows


def study_category_progress(*, study: Study) -> list[dict]:
    """Per category of the study, in prompt-set order: judgments done against those wanted (its comparisons ×
    ratings per comparison × questions). Two queries."""
    per_question = study.ratings_per_comparison * len(study.questions)
    comparisons = (
        study.comparisons.values("prompt__category")
        .annotate(n=Count("id"), first=Min("prompt__position"))
        .order_by("first")
    )
    done = dict(
        Judgment.objects.filter(comparison__study=study)
        .values_list("comparison__prompt__category")
        .annotate(n=Count("id"))
        .values_list("comparison__prompt__category", "n")
        .order_by()
    )
    rows = []
    for row in comparisons:
        wanted = row["n"] * per_question
        n_done = done.get(row["prompt__category"], 0)
        rows.append(
            {
                "category": row["prompt__category"],
                "done": n_done,
                "wanted": wanted,
                "fraction": min(1.0, n_done / wanted) if wanted else 0.0,
            }
        )
    return rows


def study_raters_state(*, study: Study) -> dict:
    """Raters who started and finished, how many are flagged by quality control, and the flags by reason."""
    counts = Rater.objects.filter(study=study).aggregate(
        # distinct: the flags join repeats a rater once per flag.
        started=Count("id", distinct=True),
        finished=Count("id", filter=Q(finished_at__isnull=False), distinct=True),
        flagged=Count("id", filter=Q(flags__isnull=False), distinct=True),
    )
    by_reason = dict(
        RaterFlag.objects.filter(rater__study=study)
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
        .order_by()
    )
    flags = [
        {"reason": reason.value, "label": reason.label, "n": by_reason[reason.value]}
        for reason in RaterFlag.Reason
        if by_reason.get(reason.value)
    ]
    return {**counts, "flags": flags}


def study_time_to_finish(*, study: Study, remaining: int, now: datetime | None = None) -> dict:
    """Seconds until every wanted judgment is in at the recent answer rate (judgments per second over RATE_WINDOW,
    or since the study opened if later): None while the study is not open or the rate is unknown."""
    now = now or timezone.now()
    if remaining <= 0:
        return {"eta_s": 0.0, "rate_per_min": None, "eta_text": "done"}
    unknown = {"eta_s": None, "rate_per_min": None, "eta_text": "—"}
    if study.status != Study.Status.OPEN:
        return unknown
    since = now - RATE_WINDOW
    if study.opened_at and study.opened_at > since:
        since = study.opened_at
    span = (now - since).total_seconds()
    recent = Judgment.objects.filter(comparison__study=study, created_at__gte=since, created_at__lte=now).count()
    if span < RATE_MIN_SECONDS or recent < RATE_MIN_JUDGMENTS:
        return unknown
    rate = recent / span
    eta_s = remaining / rate
    return {"eta_s": eta_s, "rate_per_min": 60 * rate, "eta_text": duration_text(eta_s)}


def duration_text(seconds: float) -> str:
    """About how long: "about 40 s", "about 12 min", "about 3 h 20 min", "about 2 d 4 h"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"about {seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"about {hours} h {minutes} min" if minutes else f"about {hours} h"
    days, hours = divmod(hours, 24)
    return f"about {days} d {hours} h" if hours else f"about {days} d"


def study_actions(*, study: Study, samples: list[dict], runs: list[dict], judgments: int) -> dict:
    """Which of the study page's buttons apply now (each POST endpoint still checks for itself).

    generate: draft or generating, a generated model still short of samples, and no run pending or running;
    open: draft, generating or closed (reopen), with every side's samples present; close: open;
    results: once there is a judgment."""
    status = study.status
    complete = all(s["present"] >= s["needed"] for s in samples)
    running = any(r["status"] in CANCELLABLE for r in runs)
    return {
        "generate": status in (Study.Status.DRAFT, Study.Status.GENERATING)
        and not running
        and any(s["generated"] and s["present"] < s["needed"] for s in samples),
        "open": status in (Study.Status.DRAFT, Study.Status.GENERATING, Study.Status.CLOSED) and complete,
        "close": status == Study.Status.OPEN,
        "results": judgments > 0,
        "samples_complete": complete,
        "generation_running": running,
        "imported_short": [s["model"] for s in samples if not s["generated"] and s["present"] < s["needed"]],
    }


def study_dashboard_state(*, study: Study, now: datetime | None = None) -> dict:
    """Everything the study page shows and its script polls (progress.json)."""
    progress = study_progress(study=study)
    samples = study_samples_state(study=study)
    runs = study_runs_state(study=study)
    remaining = max(progress["target"] - progress["judgments"], 0)
    return {
        "status": study.status,
        "status_label": study.get_status_display(),
        "progress": progress,
        "categories": study_category_progress(study=study),
        "raters": study_raters_state(study=study),
        "time_to_finish": study_time_to_finish(study=study, remaining=remaining, now=now),
        "samples": samples,
        "runs": runs,
        "actions": study_actions(study=study, samples=samples, runs=runs, judgments=progress["judgments"]),
    }
