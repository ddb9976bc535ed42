"""Everything that writes studies and ratings: a study's lifecycle, raters, assignments, judgments, quality control.

A study goes draft → generating → open → closed. Raters join an open study through its link (anonymously or with
their crowd platform's id); each item they are served is an Assignment that records what was displayed (which
model on the left, the image order). A submitted comparison becomes one Judgment per question, converted from what
the rater saw (left / tie / right) to model space (A / tie / B, A being the comparison's model_a); a submitted gold
trial or practice item becomes ControlAnswers, never Judgments.

Serving is safe under concurrency: a comparison's slots are a counter (Comparison.n_assigned) that one UPDATE takes
from, picking the row with SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL, so no comparison goes to more raters than
the study wants and raters arriving together do not queue behind one row. A rater's own requests are serialised by
locking their row, so two tabs see the same item. An assignment left unanswered past the study's timeout is
reclaimed: its slot goes back to the pool. Submitting is idempotent on the assignment key: the same answers again
are a success that records nothing, different ones a conflict.
"""

import hashlib
import io
import itertools
import posixpath
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image

from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample
from drawbench.studies import quality, sql
from drawbench.studies.models import (
    Assignment,
    Choice,
    Comparison,
    ControlAnswer,
    DisplayedChoice,
    GoldTrial,
    Judgment,
    Question,
    Rater,
    RaterFlag,
    Study,
)
from drawbench.studies.platforms import PlatformIdentity, session_parameter
from drawbench.studies.selectors import (
    RaterProgress,
    assignment_pending_for_rater,
    gold_trial_unseen_for_rater,
    rater_answer_stats,
    rater_progress,
    rater_progress_from_counts,
    study_missing_samples,
    study_prompts,
)

DISPLAYED_CHOICES: tuple[str, ...] = tuple(DisplayedChoice.values)
# A page left open over a night still submits; beyond a day the number is no response time at all.
MAX_RESPONSE_TIME_MS = 24 * 60 * 60 * 1000
# How many missing (model, prompt) lines an error message spells out before summarising the rest.
MISSING_LINES_SHOWN = 20
JUDGMENT_TRUSTED_FIELDS = ("assignment", "comparison", "rater", "left_model")
# Rows built here from rows just read (under lock where it matters); the database holds the constraints. Validating
# them again would cost a query per foreign key and per constraint on the path every answer takes.
ASSIGNMENT_TRUSTED_FIELDS = ("rater", "comparison", "gold_trial", "left_model")
CONTROL_ANSWER_TRUSTED_FIELDS = ("assignment", "rater", "gold_trial")
# Gold trials made per kind when a study opens (fewer when the study has fewer prompts).
GOLD_TRIALS_PER_KIND = 4
# At most this many abandoned assignments are reclaimed per sweep (a sweep runs when a rater finds no free slot).
SWEEP_BATCH = 500

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
ERROR_NOT_FRACTION = "{field} must be a number from 0 to 1; got {value!r}."

ERROR_STATUS_TRANSITION = "Study {study!r} is {status}; it cannot be {action}."
ERROR_SAMPLES_MISSING = "Study {study!r} cannot open: {n} (model, prompt) pairs have fewer than {k} samples:"
ERROR_SAMPLES_MORE_MISSING = "… and {n} more."

ERROR_STUDY_NOT_OPEN = "This study is not open for rating."
ERROR_COMPARISON_OTHER_STUDY = "This comparison belongs to another study than the rater's."
ERROR_COMPARISON_FULL = "Comparison {comparison} already has its {n} raters."
# Worded without the model's name: a message raised while serving a rater must not say which model is which.
ERROR_NOT_ENOUGH_SAMPLES = "Comparison {comparison}: a side has {n} samples of prompt {position}; the study shows {k}."
ERROR_ASSIGNMENT_ANSWERED = (
    "This comparison has already been answered differently (in another tab or an earlier try); the first answer "
    "was kept."
)
ERROR_ASSIGNMENT_UNKNOWN = "This answer is not for a comparison you were shown; please answer the one on this page."
ERROR_ASSIGNMENT_EXPIRED = (
    "This comparison waited too long for an answer and went to another rater; your answer to it was not needed. "
    "Please go on with the next one."
)
ERROR_CONSENT_REQUIRED = "Please read the consent information and tick the box to agree before you start."
ERROR_ANSWER_MISSING = "Please answer the question: {text}"
ERROR_ANSWER_UNEXPECTED = "Unexpected answer to {question!r}: this study does not ask that question."
ERROR_CHOICE_UNKNOWN = "Unknown answer {choice!r} to {question!r}: expected one of left, tie, right."
ERROR_RESPONSE_TIME = "The response time must be between 0 and {max} ms; got {value!r}."
ERROR_OTHER_SESSION = (
    "This {platform} id started this study in another session: the link's {parameter} is not the one it started "
    "with. Open the study from the link of that session (or the browser you started in)."
)


class StudyNotOpen(ValidationError):
    """The study is not (or no longer) open for rating (HTTP 410 on the API)."""


class AnswerConflict(ValidationError):
    """The assignment was already answered, differently: the first answer stands (HTTP 409)."""


class AssignmentUnknown(ValidationError):
    """No assignment of this rater has this key (HTTP 404 on the API, 400 on the form)."""


class AssignmentExpired(ValidationError):
    """The assignment was reclaimed after its timeout and its comparison has gone to other raters (HTTP 409)."""


class OtherSession(ValidationError):
    """A crowd id seen before, arriving with another platform session than the one it started with (HTTP 403)."""


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
    max_comparisons_per_rater: int | None = None,
    instructions: str = "",
    consent_text: str = "",
    practice_items: int = 0,
    gold_rate: float = 0.0,
    min_gold_accuracy: float = 0.8,
    min_response_time_ms: int = 1000,
    assignment_timeout_s: int = 30 * 60,
    completion_code: str | None = None,
    completion_url: str = "",
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
        completion_url=completion_url,
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
    if study.gold_rate > 0 or study.practice_items > 0:
        gold_trials_prepare(study=study)
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


# --- gold trials ------------------------------------------------------------------------------------------------


def _png_without_metadata(image: Image.Image) -> bytes:
    """PNG bytes of the pixels only: an image rebuilt from raw pixels has no text chunks, EXIF or ICC to copy."""
    rgb = image.convert("RGB")
    bare = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_store_beside(*, source_name: str, image: Image.Image) -> str:
    """Store `image` content-hash named in the folder of the sample it was made from, so that its URL looks like any
    sample's; identical bytes share one file. Returns the storage name."""
    data = _png_without_metadata(image)
    name = posixpath.join(posixpath.dirname(source_name), f"{hashlib.sha256(data).hexdigest()}.png")
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:
            # Another writer stored the same bytes in between; storage kept a second copy under a suffixed name.
            default_storage.delete(saved)
    return name


def _degraded_store(*, sample_name: str, seed: int) -> str:
    with default_storage.open(sample_name, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return _image_store_beside(source_name=sample_name, image=quality.degraded_copy(image, seed=seed))


@transaction.atomic
def gold_trials_prepare(*, study: Study, rng: random.Random | None = None) -> list[GoldTrial]:
    """Make the study's gold trials from its own samples, once (the ones already made are returned as they are).

    Up to GOLD_TRIALS_PER_KIND of each kind, on distinct prompts, each from one model chosen at random: identical
    sets; the caption's set against the same model's set for a prompt of another category (of another prompt when
    there is one category); the caption's set against blurred, noised copies of it, stored like samples.
    """
    existing = list(study.gold_trials.all())
    if existing:
        return existing
    rng = rng or display_rng()
    k = study.samples_per_side
    models = list(study.evaluated_models.order_by("pk").values_list("pk", flat=True))
    prompts = list(study_prompts(study=study).only("id", "category"))
    names: dict[tuple[int, int], list[str]] = {}
    for model_id, prompt_id, name in (
        Sample.objects.filter(evaluated_model_id__in=models, prompt__in=prompts)
        .order_by("evaluated_model", "prompt", "index")
        .values_list("evaluated_model_id", "prompt_id", "image")
    ):
        names.setdefault((model_id, prompt_id), []).append(name)

    trials = []
    for kind in (GoldTrial.Kind.DEGRADED, GoldTrial.Kind.MISMATCH, GoldTrial.Kind.IDENTICAL):
        for prompt in rng.sample(prompts, min(GOLD_TRIALS_PER_KIND, len(prompts))):
            model_id = rng.choice(models)
            available = names.get((model_id, prompt.pk), [])
            if len(available) < k:
                continue
            reference = rng.sample(available, k)
            if kind == GoldTrial.Kind.IDENTICAL:
                foil = list(reference)
            elif kind == GoldTrial.Kind.DEGRADED:
                foil = [_degraded_store(sample_name=name, seed=rng.getrandbits(32)) for name in reference]
            else:
                others = [p for p in prompts if p.pk != prompt.pk and len(names.get((model_id, p.pk), [])) >= k]
                if not others:
                    continue
                other = rng.choice([p for p in others if p.category != prompt.category] or others)
                foil = rng.sample(names[(model_id, other.pk)], k)
            trial = GoldTrial(study=study, kind=kind, prompt=prompt, reference_images=reference, foil_images=foil)
            trial.full_clean(exclude=["study", "prompt"])
            trials.append(trial)
    return GoldTrial.objects.bulk_create(trials)


# --- raters -----------------------------------------------------------------------------------------------------


@transaction.atomic
def rater_create(
    *,
    study: Study,
    external_id: str = "",
    platform: str = Rater.Platform.ANONYMOUS,
    platform_study_id: str = "",
    platform_session_id: str = "",
    consent: bool = False,
) -> Rater:
    """A new rater of an open study (the Start button of the study link). A study with consent text needs `consent`."""
    study = Study.objects.get(pk=study.pk)
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(ERROR_STUDY_NOT_OPEN)
    if study.consent_text and not consent:
        raise ValidationError({"consent": ERROR_CONSENT_REQUIRED})
    if external_id and platform == Rater.Platform.ANONYMOUS:
        platform = Rater.Platform.EXTERNAL
    rater = Rater(
        study=study,
        platform=platform,
        external_id=external_id,
        platform_study_id=platform_study_id,
        platform_session_id=platform_session_id,
        consented_at=timezone.now() if consent else None,
    )
    rater.full_clean(exclude=["study"], validate_constraints=False)
    rater.save()
    return rater


def rater_returning(*, study: Study, identity: PlatformIdentity | None) -> Rater | None:
    """The rater this crowd identity already is in the study, or None (a new visitor, or no crowd id).

    A crowd id is not a secret (it shows in links, screenshots, a platform's messages): the platform's session id of
    the visit must be the one the rater started with, when one was recorded (Prolific's SESSION_ID, MTurk's
    assignmentId), else OtherSession. The browser a rater started in keeps them without it (its session holds them).
    """
    if identity is None or not identity.external_id:
        return None
    returning = Rater.objects.filter(study=study, platform=identity.platform, external_id=identity.external_id).first()
    if returning is not None and returning.platform_session_id not in ("", identity.platform_session_id):
        raise OtherSession(
            ERROR_OTHER_SESSION.format(
                platform=returning.get_platform_display(), parameter=session_parameter(identity.platform)
            ),
            code="other_session",
        )
    return returning


def rater_join(*, study: Study, identity: PlatformIdentity | None = None, consent: bool = False) -> Rater:
    """The rater a visitor of the study link is: the same one again for a crowd id seen before (from the same
    platform session: see rater_returning), else a new one."""
    returning = rater_returning(study=study, identity=identity)
    if returning is not None:
        return rater_consent(rater=returning, consent=consent)
    kwargs = {}
    if identity is not None:
        kwargs = {
            "platform": identity.platform,
            "external_id": identity.external_id,
            "platform_study_id": identity.platform_study_id,
            "platform_session_id": identity.platform_session_id,
        }
    try:
        return rater_create(study=study, consent=consent, **kwargs)
    except IntegrityError:
        # The same crowd id started twice at once (two tabs): the one that got in first is the rater.
        return Rater.objects.get(study=study, platform=kwargs["platform"], external_id=kwargs["external_id"])


def rater_consent(*, rater: Rater, consent: bool) -> Rater:
    """A rater coming back: record their consent if the study asks for it and they had not given it yet."""
    if rater.study.consent_text and rater.consented_at is None:
        if not consent:
            raise ValidationError({"consent": ERROR_CONSENT_REQUIRED})
        rater.consented_at = timezone.now()
        rater.save(update_fields=["consented_at"])
    return rater


@transaction.atomic
def rater_finish(*, rater: Rater) -> Rater:
    """Record when a rater reached the finish page; the first time counts."""
    if rater.finished_at is None:
        rater.finished_at = timezone.now()
        rater.full_clean(exclude=["study"], validate_constraints=False)
        rater.save(update_fields=["finished_at"])
    return rater


def rater_complete(*, rater: Rater) -> Rater:
    """Record that a rater had nothing left to rate (they get the completion code) and refresh their flags."""
    with transaction.atomic():
        if rater.completed_at is None:
            rater.completed_at = timezone.now()
            rater.save(update_fields=["completed_at"])
        rater_finish(rater=rater)
    rater_flags_refresh(study=rater.study, rater_ids=[rater.pk])
    return rater


@transaction.atomic
def rater_flags_refresh(*, study: Study, rater_ids: list[int] | None = None) -> dict[int, dict[str, str]]:
    """Flag the study's raters (or those of `rater_ids`) by their answers; withdraw flags that no longer hold.

    Returns {rater id: {reason: detail}} for every rater considered. Judgments are not touched.
    """
    if rater_ids is None:
        rater_ids = list(Rater.objects.filter(study=study).values_list("pk", flat=True))
    stats = rater_answer_stats(study=study, rater_ids=rater_ids)
    wanted = {
        rater_id: quality.rater_flag_reasons(
            stats.get(rater_id, quality.RaterAnswerStats()),
            min_gold_accuracy=study.min_gold_accuracy,
            min_response_time_ms=study.min_response_time_ms,
        )
        for rater_id in rater_ids
    }
    stale, changed = [], []
    held = set()
    for flag in RaterFlag.objects.filter(rater_id__in=rater_ids):
        detail = wanted[flag.rater_id].get(flag.reason)
        if detail is None:
            stale.append(flag.pk)
            continue
        held.add((flag.rater_id, flag.reason))
        if flag.detail != detail:
            flag.detail = detail
            changed.append(flag)
    RaterFlag.objects.filter(pk__in=stale).delete()
    RaterFlag.objects.bulk_update(changed, ["detail"])
    RaterFlag.objects.bulk_create(
        [
            RaterFlag(rater_id=rater_id, reason=reason, detail=detail)
            for rater_id, reasons in wanted.items()
            for reason, detail in reasons.items()
            if (rater_id, reason) not in held
        ],
        ignore_conflicts=True,
    )
    return wanted


# --- serving ----------------------------------------------------------------------------------------------------


def display_rng() -> random.Random:
    """The generator of one request's draws (sides, image orders, gold slots): seeded with 128 bits from the
    operating system, so that nothing a rater sees predicts the next draw, without a system call per number (a
    batch draws hundreds)."""
    return random.Random(secrets.randbits(128))


def _comparison_slot_take(*, comparison_id: int, study: Study) -> bool:
    """Take one slot of this comparison if it has one free."""
    return bool(
        Comparison.objects.filter(pk=comparison_id, n_assigned__lt=study.ratings_per_comparison).update(
            n_assigned=F("n_assigned") + 1
        )
    )


@transaction.atomic
def assignments_release_expired(*, study: Study, now: datetime | None = None) -> int:
    """Reclaim the study's comparison assignments left unanswered past their lease: their slots go back to the pool.

    The assignment rows stay (what was shown is kept, and the rater is never served that comparison again); an
    answer that comes later is accepted only if the comparison still has a free slot. Returns how many were released.

    Rows another transaction holds (a concurrent release, an answer arriving) are waited for, not skipped, then
    checked again: a rater who missed, released nothing because another rater was releasing, and claimed before that
    release committed would find every slot taken and stop, while slots came free (seen: comparisons that never
    reached their target). Locked in id order, so that two releases never wait for each other.
    """
    now = now or timezone.now()
    expired = list(
        Assignment.objects.select_for_update(of=("self",))
        .filter(
            rater__study=study,
            kind=Assignment.Kind.COMPARISON,
            completed_at__isnull=True,
            released_at__isnull=True,
            expires_at__lt=now,
        )
        .order_by("pk")
        .values_list("pk", "comparison_id")[:SWEEP_BATCH]
    )
    if not expired:
        return 0
    Assignment.objects.filter(pk__in=[pk for pk, _ in expired]).update(released_at=now)
    per_comparison: dict[int, int] = {}
    for _, comparison_id in expired:
        per_comparison[comparison_id] = per_comparison.get(comparison_id, 0) + 1
    for comparison_id, n in sorted(per_comparison.items()):
        Comparison.objects.filter(pk=comparison_id).update(n_assigned=F("n_assigned") - n)
    return len(expired)


def _assignment_build(
    *,
    rater: Rater,
    study: Study,
    comparison: Comparison,
    rng: random.Random,
    now: datetime,
    samples: list[tuple[int, int, str]] | None = None,
) -> Assignment:
    """Draw which model is on the left and which samples are shown, in which order: the assignment, not saved yet
    (sql.assignments_insert saves it).

    With more samples than the study shows per side, the shown ones are drawn at random among them. `samples`: the
    comparison's (sample id, model id, storage name) when the caller has read them already. The storage names ride
    along on the instance (`image_names`) so that showing it costs no query.
    """
    k = study.samples_per_side
    found: dict[int, list[tuple[int, str]]] = {comparison.model_a_id: [], comparison.model_b_id: []}
    if samples is None:
        samples = sql.samples_of(prompt_id=comparison.prompt_id, model_ids=list(found))
    for sample_id, model_id, name in samples:
        found[model_id].append((sample_id, name))
    sides = []
    for model_id in (comparison.model_a_id, comparison.model_b_id):
        if len(found[model_id]) < k:
            raise ValidationError(
                ERROR_NOT_ENOUGH_SAMPLES.format(
                    comparison=comparison.pk, n=len(found[model_id]), position=comparison.prompt.position, k=k
                )
            )
        sides.append((model_id, [sample_id for sample_id, _ in rng.sample(found[model_id], k)]))
    if rng.random() < 0.5:
        sides.reverse()
    (left_model_id, left_ids), (_, right_ids) = sides

    assignment = Assignment(
        rater=rater,
        kind=Assignment.Kind.COMPARISON,
        comparison=comparison,
        left_model_id=left_model_id,
        left_sample_ids=left_ids,
        right_sample_ids=right_ids,
        served_at=now,
        expires_at=now + timedelta(seconds=study.assignment_timeout_s),
    )
    # Not full_clean'd: every value was read from the database or drawn here (validating them cost more than the
    # rest of serving a batch).
    assignment.image_names = {sample_id: name for pairs in found.values() for sample_id, name in pairs}
    return assignment


def _assignment_build_control(
    *, rater: Rater, trial: GoldTrial, kind: str, rng: random.Random, now: datetime
) -> Assignment:
    """A gold trial to serve (silently, or labelled as practice), not saved yet: the reference set on a random side,
    both shuffled."""
    reference, foil = list(trial.reference_images), list(trial.foil_images)
    rng.shuffle(reference)
    rng.shuffle(foil)
    reference_on_left = rng.random() < 0.5
    left, right = (reference, foil) if reference_on_left else (foil, reference)
    assignment = Assignment(
        rater=rater,
        kind=kind,
        gold_trial=trial,
        reference_on_left=reference_on_left,
        left_images=left,
        right_images=right,
        served_at=now,
    )
    assignment.full_clean(exclude=ASSIGNMENT_TRUSTED_FIELDS, validate_unique=False, validate_constraints=False)
    return assignment


@transaction.atomic
def assignment_create(*, rater: Rater, comparison: Comparison, rng: random.Random | None = None) -> Assignment:
    """Serve this comparison to a rater, taking one of its slots: draw the left model and the images shown.

    Refused when the comparison already has ratings_per_comparison raters (holding or done).
    """
    rng = rng or display_rng()
    study = Study.objects.get(pk=rater.study_id)
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(ERROR_STUDY_NOT_OPEN)
    if comparison.study_id != rater.study_id:
        raise ValidationError(ERROR_COMPARISON_OTHER_STUDY)
    if not _comparison_slot_take(comparison_id=comparison.pk, study=study):
        raise ValidationError(ERROR_COMPARISON_FULL.format(comparison=comparison.pk, n=study.ratings_per_comparison))
    assignment = _assignment_build(rater=rater, study=study, comparison=comparison, rng=rng, now=timezone.now())
    sql.assignments_insert(assignments=[assignment])
    return assignment


@dataclass
class RaterCounts:
    """Read with the rater's lock: items answered (practice aside), practice items served, comparisons held (not
    reclaimed), and the study's comparisons and gold trials. A count the study's settings made moot when the lock
    was taken is None; `complete` reads them all if the settings changed since."""

    done: int
    practice: int | None
    held: int | None
    comparisons: int
    gold_trials: int | None

    @classmethod
    def of(cls, counts: tuple) -> "RaterCounts":
        return cls(*counts)

    def complete(self, *, rater_id: int, study: Study) -> "RaterCounts":
        needed = (
            (study.practice_items and self.practice is None)
            or (study.max_comparisons_per_rater is not None and self.held is None)
            or (study.gold_rate > 0 and self.gold_trials is None)
        )
        if needed:
            done, self.practice, self.held, _, self.gold_trials = sql.rater_counts(rater_id=rater_id)
        return self

    def progress(self, study: Study) -> RaterProgress:
        return rater_progress_from_counts(
            study=study, done=self.done, comparisons=self.comparisons, gold_trials=self.gold_trials
        )


def assignment_next_for_rater(*, rater: Rater, rng: random.Random | None = None) -> Assignment | None:
    """What the rater sees now: their unanswered item if any (a reload shows the same), else a new one; None when
    there is nothing left for them.

    In order: the oldest pending item (its lease renewed: it is shown now); a practice item while they have had
    fewer than practice_items; nothing once they hold max_comparisons_per_rater comparisons; else a batch of
    settings.DRAWBENCH_RATER_BATCH items (fewer at the cap), each a silent gold trial with probability gold_rate or a
    slot of one of the comparisons with the fewest raters they have not seen; its first item is returned.
    """
    return _assignment_next_counted(rater=rater, rng=rng or display_rng())[0]


def _assignment_next_counted(*, rater: Rater, rng: random.Random) -> tuple[Assignment | None, RaterCounts | None]:
    """assignment_next_for_rater, and the rater's counts as read with their lock (None after a miss)."""
    with transaction.atomic():
        locked, counts = _rater_lock(rater=rater)
        served = _assignment_next_locked(rater=locked, counts=counts, rng=rng, wait=False)
    if served is not _NO_FREE_SLOT:
        return served, counts
    return _assignment_next_after_miss(rater=rater, rng=rng), None


_NO_FREE_SLOT = object()


def _rater_lock(*, rater: Rater) -> tuple[Rater, RaterCounts]:
    """Lock the rater's row (their own concurrent requests, two tabs or a double click, queue up and agree) and read
    their study afresh and their counts, in one statement."""
    cached = rater.study if Rater.study.is_cached(rater) else None
    study, counts = sql.rater_lock(rater_id=rater.pk, study=cached)
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(ERROR_STUDY_NOT_OPEN)
    rater.study = study
    return rater, RaterCounts.of(counts).complete(rater_id=rater.pk, study=study)


def _assignment_next_after_miss(*, rater: Rater, rng: random.Random) -> Assignment | None:
    # Every slot left was taken or locked by a concurrent claim. Reclaim abandoned slots (in a transaction of its
    # own, so that the rows it touched are not held while waiting below), then look again, this time waiting for
    # locked rows rather than skipping them: a locked row may still have room once its claim commits.
    assignments_release_expired(study=rater.study)
    with transaction.atomic():
        locked, counts = _rater_lock(rater=rater)
        served = _assignment_next_locked(rater=locked, counts=counts, rng=rng, wait=True)
    return None if served is _NO_FREE_SLOT else served


def _assignment_next_locked(*, rater: Rater, counts: RaterCounts, rng: random.Random, wait: bool):
    """assignment_next_for_rater's rules, under the rater's lock; _NO_FREE_SLOT when a slot may still come free."""
    study = rater.study
    now = timezone.now()
    pending = assignment_pending_for_rater(rater=rater) if sql.pending_count(rater_id=rater.pk) else None
    if pending is not None:
        if pending.kind == Assignment.Kind.COMPARISON:
            pending.expires_at = now + timedelta(seconds=study.assignment_timeout_s)
            pending.save(update_fields=["expires_at"])
        return pending

    if study.practice_items and counts.practice < study.practice_items:
        trial = gold_trial_unseen_for_rater(rater=rater, practice=True)
        if trial is not None:
            practice = _assignment_build_control(
                rater=rater, trial=trial, kind=Assignment.Kind.PRACTICE, rng=rng, now=now
            )
            sql.assignments_insert(assignments=[practice])
            return practice
    batch = _batch_serve(rater=rater, counts=counts, rng=rng, wait=wait, now=now)
    if batch is None:
        return None
    return batch[0] if batch else _NO_FREE_SLOT


def _batch_serve(
    *, rater: Rater, counts: RaterCounts, rng: random.Random, wait: bool, now: datetime
) -> list[Assignment] | None:
    """Serve the rater a batch of settings.DRAWBENCH_RATER_BATCH items (fewer at their cap), under their lock: the
    items saved, in the order they will see them; None at their cap; empty when no slot is free.

    A rater's first batch has a size drawn between 1 and the batch size (settings.DRAWBENCH_RATER_STAGGER): raters
    who arrive together (a crowd platform's launch) and work at one pace would otherwise run out of their batches at
    the same moment, every batch, and claim their next ones all at once, contending for the same least-rated
    comparisons (on a 2-core machine, 64 such raters halved the answers served for 0.4 s every 2 s)."""
    study = rater.study
    size = settings.DRAWBENCH_RATER_BATCH
    if counts.done == 0 and settings.DRAWBENCH_RATER_STAGGER:
        size = rng.randint(1, size)
    if study.max_comparisons_per_rater is not None:
        if counts.held >= study.max_comparisons_per_rater:
            return None
        size = min(size, study.max_comparisons_per_rater - counts.held)
    batch = _batch_draw(rater=rater, study=study, size=size, rng=rng, wait=wait, now=now)
    if batch:
        if counts.held is not None:
            counts.held += sum(assignment.kind == Assignment.Kind.COMPARISON for assignment in batch)
        sql.assignments_insert(assignments=batch)
    return batch


def rater_batch_prefetch(*, rater: Rater, rng: random.Random | None = None) -> list[Assignment]:
    """Serve the rater's next batch ahead of time: when the item they are looking at is the last one they hold, so
    that answering it finds the next one waiting instead of claiming a batch while they wait for the response. The
    answer path calls it once its response has been sent (SubmitOutcome.refill_due).

    Serves nothing when they hold more than one item (a concurrent request refilled), still owe practice items, are
    at their cap, no slot is free, or the study is not open: answering their last item then serves what there is,
    as it always does. Returns the items served."""
    rng = rng or display_rng()
    try:
        with transaction.atomic():
            locked, counts = _rater_lock(rater=rater)
            study = locked.study
            if sql.pending_count(rater_id=rater.pk, up_to=2) > 1:
                return []
            if study.practice_items and counts.practice < study.practice_items:
                return []
            return _batch_serve(rater=locked, counts=counts, rng=rng, wait=False, now=timezone.now()) or []
    except StudyNotOpen:
        return []


def _batch_draw(
    *, rater: Rater, study: Study, size: int, rng: random.Random, wait: bool, now: datetime
) -> list[Assignment]:
    """The rater's next `size` items (fewer when the study has fewer left for them), in the order they will see
    them, not saved yet: each a silent gold trial with probability gold_rate (while the rater has unseen ones),
    else a slot of a comparison, claimed here (see sql.comparisons_claim). Serving several at once spreads the
    claim's cost over several answers; each holds its slot under the same lease, renewed when it is shown."""
    slots = [not wait and bool(study.gold_rate) and rng.random() < study.gold_rate for _ in range(size)]
    gold: list[Assignment] = []
    for _ in range(sum(slots)):
        trial = gold_trial_unseen_for_rater(rater=rater, exclude=[a.gold_trial_id for a in gold])
        if trial is None:
            break
        gold.append(_assignment_build_control(rater=rater, trial=trial, kind=Assignment.Kind.GOLD, rng=rng, now=now))
    claimed = sql.comparisons_claim(rater_id=rater.pk, study=study, wait=wait, limit=size - len(gold))
    comparisons = [
        _assignment_build(rater=rater, study=study, comparison=comparison, rng=rng, now=now, samples=samples)
        for comparison, samples in claimed
    ]
    rng.shuffle(comparisons)
    # The gold trials where their slots fell among the comparisons (a slot with no unseen trial left took a
    # comparison instead).
    batch, gold_left, comparisons_left = [], iter(gold), iter(comparisons)
    for is_gold in slots:
        item = next(gold_left, None) if is_gold else None
        item = item or next(comparisons_left, None)
        if item is not None:
            batch.append(item)
    batch += [*gold_left, *comparisons_left]
    return batch


# --- answers ----------------------------------------------------------------------------------------------------


class Deferred(Sequence):
    """A list built on first use: the one-statement answer's judgments, which the rater API never looks at (building
    model instances costs more than a tenth of that answer's Python time)."""

    def __init__(self, build: Callable[[], list]):
        self._build: Callable[[], list] | None = build
        self._items: list = []

    def _list(self) -> list:
        if self._build is not None:
            self._items, self._build = self._build(), None
        return self._items

    def __getitem__(self, index):
        return self._list()[index]

    def __len__(self) -> int:
        return len(self._list())


@dataclass
class SubmitOutcome:
    """What became of a submitted answer. `created` False: the same answer had been recorded before (a retry).

    With serve_next, `next_assignment` is the rater's item after this one (None: nothing left) and `progress` where
    they stand once it is served. `refill_due`: that item is the last one the rater holds; rater_batch_prefetch
    serves their next batch (the caller runs it once its response is sent).
    """

    assignment: Assignment
    created: bool
    judgments: Sequence[Judgment] = field(default_factory=list)
    control_answers: list[ControlAnswer] = field(default_factory=list)
    next_assignment: Assignment | None = None
    progress: RaterProgress | None = None
    refill_due: bool = False

    @property
    def feedback(self) -> str | None:
        """For a practice item, what a careful rater answers, in the rater's words (left = set A)."""
        if self.assignment.kind != Assignment.Kind.PRACTICE:
            return None
        return practice_feedback(self.assignment)


PRACTICE_FEEDBACK = {
    GoldTrial.Kind.IDENTICAL: "In that practice item both sets held the same images: “I am indifferent” fits both "
    "questions.",
    GoldTrial.Kind.MISMATCH: "In that practice item set {reference} was made for the caption and set {foil} for "
    "another one: set {reference} represents the caption better.",
    GoldTrial.Kind.DEGRADED: "In that practice item set {foil} was a blurred, noisy copy of set {reference}: set "
    "{reference} is of higher quality.",
}


def practice_feedback(assignment: Assignment) -> str:
    reference, foil = ("A", "B") if assignment.reference_on_left else ("B", "A")
    return PRACTICE_FEEDBACK[assignment.gold_trial.kind].format(reference=reference, foil=foil)


def _validate_answers(*, questions: Sequence[str], answers: Mapping[str, str], response_time_ms) -> list[str]:
    errors = []
    for question in questions:
        if not answers.get(question):
            errors.append(ERROR_ANSWER_MISSING.format(text=Question(question).label))
    for question, choice in answers.items():
        if question not in questions:
            errors.append(ERROR_ANSWER_UNEXPECTED.format(question=question))
        elif choice and choice not in DISPLAYED_CHOICES:
            errors.append(ERROR_CHOICE_UNKNOWN.format(choice=choice, question=question))
    if (
        isinstance(response_time_ms, bool)
        or not isinstance(response_time_ms, int)
        or not 0 <= response_time_ms <= MAX_RESPONSE_TIME_MS
    ):
        errors.append(ERROR_RESPONSE_TIME.format(max=MAX_RESPONSE_TIME_MS, value=response_time_ms))
    return errors


def _to_model_space(displayed: str, *, left_is_a: bool) -> str:
    if displayed == "tie":
        return Choice.TIE
    return Choice.A if (displayed == "left") == left_is_a else Choice.B


def _to_displayed(choice: str, *, left_is_a: bool) -> str:
    if choice == Choice.TIE:
        return DisplayedChoice.TIE
    return DisplayedChoice.LEFT if (choice == Choice.A) == left_is_a else DisplayedChoice.RIGHT


def assignment_submit(
    *,
    rater: Rater,
    key: str,
    answers: Mapping[str, str],
    response_time_ms: int,
    serve_next: bool = False,
    rng: random.Random | None = None,
) -> SubmitOutcome:
    """Record a rater's answers to the assignment with this key: all or nothing, at most once.

    `answers` maps each question of the study to what the rater chose on screen: "left" (set A), "tie" or "right"
    (set B). A comparison's answers become Judgments in model space, with what was displayed copied from the
    assignment; a gold trial's or practice item's become ControlAnswers marked right or wrong. The key is the
    idempotency key: the same answers again return the recorded ones (created False); different ones raise
    AnswerConflict. An unknown key raises AssignmentUnknown; an assignment reclaimed after its timeout is accepted
    only while its comparison still has a free slot, else AssignmentExpired.

    `serve_next` also serves the rater's next item (as assignment_next_for_rater), which is what one rater request
    costs on the answer path. Its common case (a comparison answered, a comparison next in the rater's batch, on
    PostgreSQL) is one statement; every other case runs the general path below, in one transaction.
    """
    if serve_next:
        outcome = _assignment_submit_common(
            rater=rater, key=key, answers=answers, response_time_ms=response_time_ms, rng=rng
        )
        if outcome is not None:
            return outcome
    # Made here rather than first: the common case above draws nothing unless it serves a batch inline.
    rng = rng or display_rng()
    missed = False
    try:
        with transaction.atomic():
            outcome, counts = _assignment_submit(
                rater=rater, key=key, answers=answers, response_time_ms=response_time_ms
            )
            if serve_next:
                served = _assignment_next_locked(rater=outcome.assignment.rater, counts=counts, rng=rng, wait=False)
                missed = served is _NO_FREE_SLOT
                outcome.next_assignment = None if missed else served
    except IntegrityError as exc:
        # A concurrent submission of the same assignment won the race (the unique constraint caught it).
        raise AnswerConflict(ERROR_ASSIGNMENT_ANSWERED, code="conflict") from exc
    if missed:
        outcome.next_assignment = _assignment_next_after_miss(rater=rater, rng=rng)
        counts = None
    if serve_next:
        if counts is None or outcome.next_assignment is None:
            outcome.progress = rater_progress(rater=outcome.assignment.rater)
        else:
            outcome.progress = counts.progress(outcome.assignment.rater.study)
    if outcome.created and outcome.assignment.kind == Assignment.Kind.GOLD:
        rater_flags_refresh(study=outcome.assignment.rater.study, rater_ids=[rater.pk])
    return outcome


def _judgments_of(
    *, assignment: Assignment, rater: Rater, choices: Mapping[str, str], response_time_ms: int, now: datetime
) -> list[Judgment]:
    """The judgments of an answer to a comparison, one per question (`choices` in model space, in question order),
    with what was displayed copied from the assignment; not saved."""
    return [
        Judgment(
            assignment=assignment,
            comparison_id=assignment.comparison_id,
            rater=rater,
            question=question,
            choice=choice,
            left_model_id=assignment.left_model_id,
            left_sample_ids=assignment.left_sample_ids,
            right_sample_ids=assignment.right_sample_ids,
            response_time_ms=response_time_ms,
            created_at=now,
        )
        for question, choice in choices.items()
    ]


def _assignment_submit_common(
    *, rater: Rater, key: str, answers: Mapping[str, str], response_time_ms: int, rng: random.Random | None
) -> SubmitOutcome | None:
    """assignment_submit's common case, on PostgreSQL: valid answers to a served comparison of an open study, the
    rater's next item a comparison served with it. One statement records the answer and reads the next item
    (sql.answer_and_next), in its own transaction; when the rater has nothing pending left, their next batch is
    served as assignment_next_for_rater serves it. None: not the common case (nothing was written); the general
    path decides."""
    study = rater.study if Rater.study.is_cached(rater) else None
    if connection.vendor != "postgresql" or study is None or study.status != Study.Status.OPEN or not key:
        return None
    if _validate_answers(questions=study.questions, answers=answers, response_time_ms=response_time_ms):
        return None
    now = timezone.now()
    choices = [
        (
            question,
            _to_model_space(answers[question], left_is_a=True),
            _to_model_space(answers[question], left_is_a=False),
        )
        for question in study.questions
    ]
    fast = sql.answer_and_next(
        rater_id=rater.pk,
        study=study,
        key=key,
        choices=choices,
        response_time_ms=response_time_ms,
        now=now,
        lease_until=now + timedelta(seconds=study.assignment_timeout_s),
        # An item shown with at least half its lease left keeps it (renewing is a write); else a new lease.
        renew_before=now + timedelta(seconds=study.assignment_timeout_s / 2),
        study_version=getattr(rater, "study_version", None),
    )
    if fast is None:
        return None
    assignment = fast.assignment
    assignment.completed_at = now
    assignment.rater = rater

    def recorded() -> list[Judgment]:
        judgments = _judgments_of(
            assignment=assignment,
            rater=rater,
            choices={question: a_left if fast.left_is_a else b_left for question, a_left, b_left in choices},
            response_time_ms=response_time_ms,
            now=now,
        )
        for judgment in judgments:
            judgment.pk = fast.judgment_ids[judgment.question]
            judgment._state.adding, judgment._state.db = False, connection.alias
        return judgments

    outcome = SubmitOutcome(assignment=assignment, created=True, judgments=Deferred(recorded))
    if fast.next_assignment is not None:
        outcome.next_assignment = fast.next_assignment
        outcome.next_assignment.rater = rater
        counts = RaterCounts(
            done=fast.done, practice=None, held=None, comparisons=study.n_comparisons,
            gold_trials=fast.gold_trials,
        )  # fmt: skip
        outcome.progress = counts.progress(study)
        outcome.refill_due = (
            fast.pending_after <= 1 and settings.DRAWBENCH_RATER_PREFETCH and settings.DRAWBENCH_RATER_BATCH > 1
        )
    else:
        outcome.next_assignment, counts = _assignment_next_counted(rater=rater, rng=rng or display_rng())
        has_counts = counts is not None and outcome.next_assignment is not None
        outcome.progress = counts.progress(rater.study) if has_counts else rater_progress(rater=rater)
    return outcome


def _assignment_submit(
    *, rater: Rater, key: str, answers: Mapping[str, str], response_time_ms: int
) -> tuple[SubmitOutcome, RaterCounts]:
    # The rater, then the assignment, locked in that order (as everywhere): two submissions of one assignment queue
    # up and the second sees it answered; the rater's counts come along for serving the next item.
    cached = rater.study if Rater.study.is_cached(rater) else None
    locked = sql.assignment_lock(rater_id=rater.pk, key=key, study=cached) if key else None
    if locked is None:
        raise AssignmentUnknown(ERROR_ASSIGNMENT_UNKNOWN, code="unknown")
    assignment, study = locked.assignment, locked.study
    counts = RaterCounts.of(locked.counts).complete(rater_id=rater.pk, study=study)
    # The study as just read under lock.
    rater.study = study
    assignment.rater = rater
    if assignment.completed_at is not None:
        return _replay(assignment=assignment, answers=answers), counts
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(ERROR_STUDY_NOT_OPEN)
    errors = _validate_answers(questions=study.questions, answers=answers, response_time_ms=response_time_ms)
    if errors:
        raise ValidationError(errors)
    if assignment.released_at is not None:
        if not _comparison_slot_take(comparison_id=assignment.comparison_id, study=study):
            raise AssignmentExpired(ERROR_ASSIGNMENT_EXPIRED, code="expired")
        assignment.released_at = None
        if counts.held is not None:
            counts.held += 1

    judgments: list[Judgment] = []
    control_answers: list[ControlAnswer] = []
    now = timezone.now()
    if assignment.kind == Assignment.Kind.COMPARISON:
        left_is_a = assignment.left_model_id == locked.model_a_id
        choices = {question: _to_model_space(answers[question], left_is_a=left_is_a) for question in study.questions}
        judgments = _judgments_of(
            assignment=assignment, rater=rater, choices=choices, response_time_ms=response_time_ms, now=now
        )
        for judgment in judgments:
            # The related rows were just read under lock and the one-answer-per-question rule is the database's (a
            # race ends in IntegrityError, turned into a clear message above): checking them again here would cost
            # a query each.
            judgment.full_clean(exclude=JUDGMENT_TRUSTED_FIELDS, validate_unique=False, validate_constraints=False)
        sql.answer_record(assignment_id=assignment.pk, judgments=judgments, completed_at=now)
    else:
        trial = assignment.gold_trial
        for question in study.questions:
            expected = trial.expected(question, reference_on_left=assignment.reference_on_left) or ""
            answer = ControlAnswer(
                assignment=assignment,
                rater=assignment.rater,
                gold_trial=trial,
                practice=assignment.kind == Assignment.Kind.PRACTICE,
                question=question,
                choice=answers[question],
                expected=expected,
                correct=(answers[question] == expected) if expected else None,
                response_time_ms=response_time_ms,
            )
            answer.full_clean(exclude=CONTROL_ANSWER_TRUSTED_FIELDS, validate_unique=False, validate_constraints=False)
            control_answers.append(answer)
        ControlAnswer.objects.bulk_create(control_answers)
        sql.assignment_complete(assignment_id=assignment.pk, completed_at=now)
    assignment.completed_at = now
    if assignment.kind != Assignment.Kind.PRACTICE:
        sql.rater_answered(rater_id=rater.pk)
        counts.done += 1
    outcome = SubmitOutcome(assignment=assignment, created=True, judgments=judgments, control_answers=control_answers)
    return outcome, counts


def _replay(*, assignment: Assignment, answers: Mapping[str, str]) -> SubmitOutcome:
    """An answered assignment submitted again: the recorded answers if these are the same, else a conflict."""
    if assignment.kind == Assignment.Kind.COMPARISON:
        judgments = list(Judgment.objects.filter(assignment=assignment).order_by("id"))
        left_is_a = assignment.left_model_id == assignment.comparison.model_a_id
        recorded = {j.question: _to_displayed(j.choice, left_is_a=left_is_a) for j in judgments}
        outcome = SubmitOutcome(assignment=assignment, created=False, judgments=judgments)
    else:
        control_answers = list(ControlAnswer.objects.filter(assignment=assignment).order_by("id"))
        recorded = {a.question: a.choice for a in control_answers}
        outcome = SubmitOutcome(assignment=assignment, created=False, control_answers=control_answers)
    if dict(answers) != recorded:
        raise AnswerConflict(ERROR_ASSIGNMENT_ANSWERED, code="conflict")
    return outcome


def judgment_submit(*, assignment: Assignment, answers: Mapping[str, str], response_time_ms: int) -> list[Judgment]:
    """Record a rater's answers to a comparison: one Judgment per question, all or nothing, at most once.

    See assignment_submit, which this calls: the same answers sent again return the judgments recorded the first
    time; different ones raise AnswerConflict (a ValidationError).
    """
    outcome = assignment_submit(
        rater=assignment.rater, key=assignment.key, answers=answers, response_time_ms=response_time_ms
    )
    return outcome.judgments
