"""A study's lifecycle: create (with its comparisons), mark generating, open, close."""

import itertools
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from drawbench.backends.base import backend_class
from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet
from drawbench.studies.models import (
    DEFAULT_MAX_COMPARISONS_PER_RATER,
    Comparison,
    DisplayFormat,
    Question,
    Study,
)
from drawbench.studies.selectors import samples_short, study_missing_samples, study_samples
from drawbench.studies.services.display import study_display_prepare
from drawbench.studies.services.gold import gold_trials_prepare
from drawbench.studies.services.raters import rater_flags_refresh

# How many missing (model, prompt) lines an error message spells out before summarising the rest.
MISSING_LINES_SHOWN = 20

ERROR_MODELS_TOO_FEW = "A study compares at least 2 distinct evaluated models; {n} given."
ERROR_MODEL_REPEATED = "Evaluated model {model} is listed more than once."
ERROR_CATEGORY_UNKNOWN = "Category {category!r} is not a category of prompt set {prompt_set}; it has: {known}."
ERROR_CATEGORY_REPEATED = "Category {category!r} is listed more than once."
ERROR_NO_PROMPTS = "Prompt set {prompt_set} has no prompts in the chosen categories."
ERROR_QUESTIONS_EMPTY = "A study asks at least one question."
ERROR_QUESTION_UNKNOWN = "Unknown question {question!r}; known questions: {known}."
ERROR_QUESTION_REPEATED = "Question {question!r} is listed more than once."
ERROR_NOT_POSITIVE = "{field} must be a positive whole number; got {value!r}."
ERROR_NOT_NEGATIVE = "{field} must be a whole number, 0 or more; got {value!r}."
ERROR_NOT_WITHIN = "{field} must be a whole number from {low} to {high}; got {value!r}."
ERROR_NOT_ONE_OF = "{field} must be one of {choices}; got {value!r}."
# Pixels (square) every image of a study is shown at: the study's DisplayImage constraint.
DISPLAY_SIZE_RANGE = (16, 2048)
ERROR_NOT_FRACTION = "{field} must be a number from 0 to 1; got {value!r}."

ERROR_STATUS_TRANSITION = "Study {study!r} is {status}; it cannot be {action}."
ERROR_SAMPLES_MISSING = "Study {study!r} cannot open: {n} (model, prompt) pairs have fewer than {k} samples:"
ERROR_SAMPLES_MORE_MISSING = "… and {n} more."
ERROR_SAMPLES_UNSATISFIABLE = (
    "{model} generates nothing (imported samples only) and has fewer than {k} samples for {n} of the {total} prompts "
    "in scope (as few as {fewest}, e.g. prompt {position} ({category})): import more samples first{lower}."
)
ERROR_BACKEND_UNUSABLE = "{model}: its backend cannot be loaded ({error})."


def _positive(field: str, value, *, optional: bool = False) -> str | None:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return ERROR_NOT_POSITIVE.format(field=field, value=value)
    return None


def _not_negative(field: str, value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return ERROR_NOT_NEGATIVE.format(field=field, value=value)
    return None


def _within(field: str, value, bounds: tuple[int, int]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        return ERROR_NOT_WITHIN.format(field=field, low=bounds[0], high=bounds[1], value=value)
    return None


def _one_of(field: str, value, choices: list[str]) -> str | None:
    return None if value in choices else ERROR_NOT_ONE_OF.format(field=field, choices=", ".join(choices), value=value)


def _fraction(field: str, value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        return ERROR_NOT_FRACTION.format(field=field, value=value)
    return None


@transaction.atomic
def study_create(
    *,
    name: str,
    prompt_set: PromptSet,
    evaluated_models: Sequence[EvaluatedModel],
    categories: Sequence[str] = (),
    questions: Sequence[str] = (Question.FIDELITY.value, Question.ALIGNMENT.value),
    samples_per_side: int = 8,
    ratings_per_comparison: int = 25,
    max_comparisons_per_rater: int | None = DEFAULT_MAX_COMPARISONS_PER_RATER,
    instructions: str = "",
    consent_text: str = "",
    practice_items: int = 0,
    gold_rate: float = 0.0,
    min_gold_accuracy: float = 0.8,
    min_response_time_ms: int = 1000,
    assignment_timeout_s: int = 30 * 60,
    completion_code: str | None = None,
    min_answers_for_code: int = 1,
    completion_url: str = "",
    display_size: int = 512,
    display_format: str = DisplayFormat.JPEG,
    created_by=None,
) -> Study:
    """Create a draft study and its comparisons: each prompt of the categories × each unordered pair of models.

    model_a of a comparison is the one of its pair that comes first in `evaluated_models`. Quality control is off
    unless asked for (the DrawBench protocol has none): `practice_items` labelled practice items first, silent gold
    trials at `gold_rate`. `completion_code` None draws a random code.
    """
    errors: dict[str, list[str]] = {}

    models: list[EvaluatedModel] = []
    for model in evaluated_models:
        if any(m.pk == model.pk for m in models):
            errors.setdefault("evaluated_models", []).append(ERROR_MODEL_REPEATED.format(model=model))
        else:
            models.append(model)
    if len(models) < 2:
        errors.setdefault("evaluated_models", []).append(ERROR_MODELS_TOO_FEW.format(n=len(models)))

    known_categories = sorted(set(Prompt.objects.filter(prompt_set=prompt_set).values_list("category", flat=True)))
    chosen_categories: list[str] = []
    for category in categories:
        if category in chosen_categories:
            errors.setdefault("categories", []).append(ERROR_CATEGORY_REPEATED.format(category=category))
        elif category not in known_categories:
            errors.setdefault("categories", []).append(
                ERROR_CATEGORY_UNKNOWN.format(
                    category=category, prompt_set=prompt_set, known=", ".join(known_categories) or "none"
                )
            )
        else:
            chosen_categories.append(category)

    chosen_questions: list[str] = []
    if not questions:
        errors.setdefault("questions", []).append(ERROR_QUESTIONS_EMPTY)
    for question in questions:
        if question in chosen_questions:
            errors.setdefault("questions", []).append(ERROR_QUESTION_REPEATED.format(question=question))
        elif question not in Question.values:
            errors.setdefault("questions", []).append(
                ERROR_QUESTION_UNKNOWN.format(question=question, known=", ".join(Question.values))
            )
        else:
            chosen_questions.append(str(question))

    for setting, value, optional in (
        ("samples_per_side", samples_per_side, False),
        ("ratings_per_comparison", ratings_per_comparison, False),
        ("max_comparisons_per_rater", max_comparisons_per_rater, True),
    ):
        if message := _positive(setting, value, optional=optional):
            errors.setdefault(setting, []).append(message)
    for field_name, message in (
        ("practice_items", _not_negative("practice_items", practice_items)),
        ("min_response_time_ms", _not_negative("min_response_time_ms", min_response_time_ms)),
        ("min_answers_for_code", _not_negative("min_answers_for_code", min_answers_for_code)),
        ("display_size", _within("display_size", display_size, DISPLAY_SIZE_RANGE)),
        ("display_format", _one_of("display_format", display_format, DisplayFormat.values)),
        ("assignment_timeout_s", _positive("assignment_timeout_s", assignment_timeout_s)),
        ("gold_rate", _fraction("gold_rate", gold_rate)),
        ("min_gold_accuracy", _fraction("min_gold_accuracy", min_gold_accuracy)),
    ):
        if message:
            errors.setdefault(field_name, []).append(message)

    prompts = Prompt.objects.filter(prompt_set=prompt_set).order_by("position")
    if chosen_categories:
        prompts = prompts.filter(category__in=chosen_categories)
    prompt_ids = list(prompts.values_list("id", flat=True))
    if not prompt_ids and "categories" not in errors:
        errors.setdefault("categories", []).append(ERROR_NO_PROMPTS.format(prompt_set=prompt_set))

    if errors:
        raise ValidationError(errors)

    study = Study(
        name=name,
        prompt_set=prompt_set,
        categories=chosen_categories,
        questions=chosen_questions,
        samples_per_side=samples_per_side,
        ratings_per_comparison=ratings_per_comparison,
        max_comparisons_per_rater=max_comparisons_per_rater,
        instructions=instructions,
        consent_text=consent_text,
        practice_items=practice_items,
        gold_rate=gold_rate,
        min_gold_accuracy=min_gold_accuracy,
        min_response_time_ms=min_response_time_ms,
        assignment_timeout_s=assignment_timeout_s,
        min_answers_for_code=min_answers_for_code,
        completion_url=completion_url,
        display_size=display_size,
        display_format=display_format,
        created_by=created_by,
    )
    if completion_code is not None:
        study.completion_code = completion_code
    study.full_clean()
    study.save()
    study.evaluated_models.set(models)

    # Built here rather than validated one by one: every pair differs and shares its prompt by construction, and a
    # full_clean per comparison would cost several queries for each of up to tens of thousands of rows.
    comparisons = Comparison.objects.bulk_create(
        Comparison(study=study, prompt_id=prompt_id, model_a=model_a, model_b=model_b)
        for prompt_id in prompt_ids
        for model_a, model_b in itertools.combinations(models, 2)
    )
    study.n_comparisons = len(comparisons)
    study.save(update_fields=["n_comparisons"])
    return study


def study_samples_unsatisfiable(
    *,
    prompt_set: PromptSet,
    categories: Sequence[str],
    evaluated_models: Sequence[EvaluatedModel],
    samples_per_side: int,
) -> list[str]:
    """Why a study with these settings could never open, one line per model; empty when it could.

    The rule study_open applies (samples_short), checked at creation for the models that generate nothing: each needs
    samples_per_side samples of every prompt in scope already. A generated model's runs draw samples_per_side samples
    per prompt (dashboard.services.study_generation_start), so it can always satisfy it.
    """
    prompts = Prompt.objects.filter(prompt_set=prompt_set).order_by("position").only("id", "position", "category")
    if categories:
        prompts = prompts.filter(category__in=categories)
    prompts = list(prompts)
    imported, lines = [], []
    for model in evaluated_models:
        try:
            generates = backend_class(model.backend).generates
        except Exception as exc:  # a dotted path that does not import: say so rather than fail the page
            lines.append(ERROR_BACKEND_UNUSABLE.format(model=model, error=exc))
            continue
        if not generates:
            imported.append(model)
    short: dict[int, list[tuple[Prompt, int]]] = {}
    for model, prompt, n in samples_short(models=imported, prompts=prompts, samples_per_side=samples_per_side):
        short.setdefault(model.pk, []).append((prompt, n))
    for model in imported:
        if model.pk not in short:
            continue
        prompt, fewest = min(short[model.pk], key=lambda item: (item[1], item[0].position))
        lines.append(
            ERROR_SAMPLES_UNSATISFIABLE.format(
                model=model, k=samples_per_side, n=len(short[model.pk]), total=len(prompts), fewest=fewest,
                position=prompt.position, category=prompt.category,
                lower=f" or lower samples per side to {fewest}" if fewest else "",
            )
        )  # fmt: skip
    return lines


def _check_transition(study: Study, *, allowed_from: Sequence[str], action: str) -> None:
    """Lock the study's row and refuse unless its stored status allows the action."""
    status = Study.objects.select_for_update().filter(pk=study.pk).values_list("status", flat=True).get()
    if status not in allowed_from:
        raise ValidationError(
            ERROR_STATUS_TRANSITION.format(study=study.name, status=Study.Status(status).label.lower(), action=action)
        )


@transaction.atomic
def study_mark_generating(*, study: Study) -> Study:
    """Record that the samples of a draft study are being generated (again, if it already was)."""
    _check_transition(study, allowed_from=(Study.Status.DRAFT, Study.Status.GENERATING), action="generated")
    study.status = Study.Status.GENERATING
    study.full_clean()
    study.save(update_fields=["status"])
    return study


@transaction.atomic
def study_open(*, study: Study) -> Study:
    """Open a study for rating; refused, with what is missing, unless every side of every comparison has its samples."""
    _check_transition(
        study, allowed_from=(Study.Status.DRAFT, Study.Status.GENERATING, Study.Status.CLOSED), action="opened"
    )
    missing = study_missing_samples(study=study)
    if missing:
        lines = [ERROR_SAMPLES_MISSING.format(study=study.name, n=len(missing), k=study.samples_per_side)]
        lines += missing[:MISSING_LINES_SHOWN]
        if len(missing) > MISSING_LINES_SHOWN:
            lines.append(ERROR_SAMPLES_MORE_MISSING.format(n=len(missing) - MISSING_LINES_SHOWN))
        raise ValidationError(lines)
    study.status = Study.Status.OPEN
    study.opened_at = timezone.now()
    study.closed_at = None
    study.full_clean()
    study.save(update_fields=["status", "opened_at", "closed_at"])
    samples = study_samples(study=study).values_list("id", "image")
    display = study_display_prepare(study=study, samples=list(samples))
    if study.gold_rate > 0 or study.practice_items > 0:
        gold_trials_prepare(study=study, display=display)
    if display is not None:
        display.save()
    return study


@transaction.atomic
def study_close(*, study: Study) -> Study:
    """Close a study: no more assignments or judgments. What was recorded stays."""
    _check_transition(
        study, allowed_from=(Study.Status.DRAFT, Study.Status.GENERATING, Study.Status.OPEN), action="closed"
    )
    study.status = Study.Status.CLOSED
    study.closed_at = timezone.now()
    study.full_clean()
    study.save(update_fields=["status", "closed_at"])
    rater_flags_refresh(study=study)
    return study
