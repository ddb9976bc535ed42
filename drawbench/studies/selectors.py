"""Reads with rules: what a study still lacks, how far it is, what a rater is shown next and how it is displayed,
how a rater answered (for quality flags) and what they get when they finish."""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Case, Count, DurationField, Exists, ExpressionWrapper, F, OuterRef, Q, When
from django.urls import reverse

from drawbench.catalog.models import EvaluatedModel, Prompt, Sample
from drawbench.studies import sql
from drawbench.studies.models import (
    Assignment,
    Comparison,
    ControlAnswer,
    GoldTrial,
    Judgment,
    Question,
    Rater,
    Study,
)
from drawbench.studies.quality import RaterAnswerStats


def study_prompts(*, study: Study):
    """The study's prompts, in their prompt set's order: every prompt of its categories (all when none are chosen)."""
    prompts = Prompt.objects.filter(prompt_set_id=study.prompt_set_id).order_by("position")
    if study.categories:
        prompts = prompts.filter(category__in=study.categories)
    return prompts


def study_samples(*, study: Study):
    """Every sample the study may show: its models' samples of its prompts."""
    return Sample.objects.filter(
        evaluated_model__in=study.evaluated_models.all(), prompt__in=study_prompts(study=study)
    ).order_by("pk")


def samples_short(
    *, models: Sequence[EvaluatedModel], prompts: Sequence[Prompt], samples_per_side: int
) -> list[tuple[EvaluatedModel, Prompt, int]]:
    """The rule a study opens under (and is created under, for models that generate nothing): each model needs
    ``samples_per_side`` samples of each prompt. Every (model, prompt, samples it has) short of that, in the order
    given. One query."""
    counts = {
        (model_id, prompt_id): n
        for model_id, prompt_id, n in Sample.objects.filter(
            evaluated_model__in=[m.pk for m in models], prompt__in=[p.pk for p in prompts]
        )
        .values_list("evaluated_model", "prompt")
        .annotate(n=Count("id"))
        .values_list("evaluated_model", "prompt", "n")
        .order_by()
    }
    return [
        (model, prompt, counts.get((model.pk, prompt.pk), 0))
        for model in models
        for prompt in prompts
        if counts.get((model.pk, prompt.pk), 0) < samples_per_side
    ]


def study_missing_samples(*, study: Study) -> list[str]:
    """One line per (evaluated model, prompt) of the study with fewer than samples_per_side samples."""
    models = list(study.evaluated_models.order_by("name", "version"))
    prompts = list(study_prompts(study=study).only("id", "position", "text", "category"))
    k = study.samples_per_side
    lines = []
    for model, prompt, n in samples_short(models=models, prompts=prompts, samples_per_side=k):
        text = prompt.text if len(prompt.text) <= 60 else prompt.text[:59] + "…"
        lines.append(f"{model}: prompt {prompt.position} ({prompt.category}) “{text}” has {n} of {k} samples")
    return lines


def study_progress(*, study: Study) -> dict:
    """Where rating stands (4 queries): comparisons, judgments per question against the target, raters.

    target = comparisons × ratings_per_comparison × questions; a comparison is complete once that many raters
    answered it.
    """
    questions = list(study.questions)
    n_comparisons = Comparison.objects.filter(study=study).count()
    n_complete = (
        Comparison.objects.filter(study=study)
        .annotate(n_done=Count("assignments", filter=Q(assignments__completed_at__isnull=False)))
        .filter(n_done__gte=study.ratings_per_comparison)
        .count()
    )
    per_question = dict(
        Judgment.objects.filter(comparison__study=study)
        .values_list("question")
        .annotate(n=Count("id"))
        .values_list("question", "n")
        .order_by()
    )
    raters = Rater.objects.filter(study=study).aggregate(
        started=Count("id"), finished=Count("id", filter=Q(finished_at__isnull=False))
    )
    judgments = sum(per_question.values())
    target = n_comparisons * study.ratings_per_comparison * len(questions)
    return {
        "status": study.status,
        "comparisons": n_comparisons,
        "comparisons_complete": n_complete,
        "questions": questions,
        "judgments": judgments,
        "judgments_per_question": {q: per_question.get(q, 0) for q in questions},
        "target": target,
        "fraction_complete": min(1.0, judgments / target) if target else 0.0,
        "raters_started": raters["started"],
        "raters_finished": raters["finished"],
    }


def assignment_pending_for_rater(*, rater: Rater) -> Assignment | None:
    """The rater's served, unanswered and not reclaimed item, if any: a reload shows it again rather than a new draw."""
    return (
        Assignment.objects.filter(rater=rater, completed_at__isnull=True, released_at__isnull=True)
        .select_related("comparison__prompt", "gold_trial__prompt")
        .order_by("served_at", "id")
        .first()
    )


def assignment_get_for_rater(*, rater: Rater, key: str) -> Assignment | None:
    """The rater's own assignment with this key; None for an unknown key or another rater's (or study's)."""
    if not key:
        return None
    return (
        Assignment.objects.filter(rater=rater, key=key)
        .select_related("comparison__prompt", "gold_trial__prompt")
        .first()
    )


def gold_trial_unseen_for_rater(
    *, rater: Rater, practice: bool = False, exclude: Sequence[int] = ()
) -> GoldTrial | None:
    """A gold trial of the rater's study they have not been shown (nor in `exclude`), at random; for practice, the
    plainest kinds first (a degraded copy, then a set for another prompt)."""
    trials = GoldTrial.objects.filter(study_id=rater.study_id).filter(
        ~Exists(Assignment.objects.filter(rater=rater, gold_trial=OuterRef("pk")))
    )
    if exclude:
        trials = trials.exclude(pk__in=exclude)
    order = ["?"]
    if practice:
        kinds = (GoldTrial.Kind.DEGRADED, GoldTrial.Kind.MISMATCH)
        order.insert(0, Case(*(When(kind=kind, then=rank) for rank, kind in enumerate(kinds)), default=len(kinds)))
    return trials.select_related("prompt").order_by(*order).first()


@dataclass(frozen=True)
class RaterProgress:
    done: int
    total: int

    @property
    def current(self) -> int:
        return min(self.done + 1, self.total)


def rater_progress(*, rater: Rater) -> RaterProgress:
    """How many items the rater has answered, out of how many they may get at most (practice items aside).

    Silent gold trials count as items, and the total includes the number expected at the study's gold rate: a
    counter that stood still on a gold trial would give it away.
    """
    study = rater.study
    done = Rater.objects.filter(pk=rater.pk).values_list("n_answered", flat=True).first() or 0
    comparisons = study.n_comparisons
    gold_trials = GoldTrial.objects.filter(study=study).count() if study.gold_rate > 0 else 0
    return rater_progress_from_counts(study=study, done=done, comparisons=comparisons, gold_trials=gold_trials)


def rater_progress_from_counts(*, study: Study, done: int, comparisons: int, gold_trials: int) -> RaterProgress:
    """rater_progress from counts already read (the answer path reads them with the rater's lock)."""
    total = comparisons
    if study.max_comparisons_per_rater is not None:
        total = min(total, study.max_comparisons_per_rater)
    if study.gold_rate > 0:
        expected = total * study.gold_rate / (1 - study.gold_rate) if study.gold_rate < 1 else gold_trials
        total += min(round(expected), max(0, gold_trials - study.practice_items))
    return RaterProgress(done=done, total=max(total, done))


@dataclass(frozen=True)
class DisplayedQuestion:
    value: str
    text: str


@dataclass(frozen=True)
class AssignmentDisplay:
    """What a rater sees of an assignment: the caption, the questions and two ordered lists of image URLs.

    Nothing here names a model or tells a gold trial from a comparison: images are addressed by their display names
    (opaque, random, the study's own: services.display). Only a practice item says what it is.
    """

    key: str
    caption: str
    questions: list[DisplayedQuestion]
    left_image_urls: list[str]
    right_image_urls: list[str]
    practice: bool = False


def display_url_prefix(study: Study) -> str:
    """Where the study's display images are fetched: this prefix and an image's display name (views.display_image)."""
    return _display_url_prefix(study.rater_token)


@functools.lru_cache(maxsize=1024)
def _display_url_prefix(rater_token: str) -> str:
    # Reversed once per study link and process, not on every answer (the URL patterns never change while serving).
    return reverse("rater:display-image", args=[rater_token, "x"])[:-1]


def question_text(question: str, *, caption: str) -> str:
    """The paper's wording of a question, with the caption quoted where the paper quotes it."""
    if question == Question.ALIGNMENT:
        return f"Which set of images better represents the text caption: “{caption}”?"
    return Question(question).label


def assignment_display(
    *, assignment: Assignment, study: Study, image_names: dict[int, str] | None = None
) -> AssignmentDisplay:
    """The rater-visible content of an assignment, images in their recorded order.

    A comparison's images come from `image_names` ({sample id: display name}) when given, else from the study's
    display names (sql.study_display_names: read once per process); a gold trial's are stored on the assignment.
    """
    prefix = display_url_prefix(study)
    if assignment.is_control:
        caption = assignment.gold_trial.prompt.text
        left = [prefix + name for name in assignment.left_images]
        right = [prefix + name for name in assignment.right_images]
    else:
        caption = assignment.comparison.prompt.text
        ids = [*assignment.left_sample_ids, *assignment.right_sample_ids]
        if image_names is None:
            image_names = sql.study_display_names(study, ids)
        left = [prefix + image_names[i] for i in assignment.left_sample_ids]
        right = [prefix + image_names[i] for i in assignment.right_sample_ids]
    return AssignmentDisplay(
        key=assignment.key,
        caption=caption,
        questions=[DisplayedQuestion(value=q, text=question_text(q, caption=caption)) for q in study.questions],
        left_image_urls=left,
        right_image_urls=right,
        practice=assignment.kind == Assignment.Kind.PRACTICE,
    )


def rater_answer_stats(*, study: Study, rater_ids: list[int] | None = None) -> dict[int, RaterAnswerStats]:
    """Each rater's answers counted for quality control (3 queries): sides, ties, gold answers, and fast items.

    An item is fast when the server's time from showing it to its answer (Assignment.shown_at to completed_at) is
    under the study's floor: the response time a client reports is kept for analysis, never trusted here (a bot
    that answers in 40 ms can claim 4 s).
    """
    left_chosen = Q(choice="A", left_model=F("comparison__model_a")) | Q(
        choice="B", left_model=F("comparison__model_b")
    )
    judgments = Judgment.objects.filter(comparison__study=study)
    controls = ControlAnswer.objects.filter(gold_trial__study=study, practice=False)
    answered = Assignment.objects.filter(rater__study=study, completed_at__isnull=False).exclude(
        kind=Assignment.Kind.PRACTICE
    )
    if rater_ids is not None:
        judgments = judgments.filter(rater_id__in=rater_ids)
        controls = controls.filter(rater_id__in=rater_ids)
        answered = answered.filter(rater_id__in=rater_ids)
    counted: dict[int, dict[str, int]] = {}
    for row in (
        judgments.values("rater")
        .annotate(
            judgments=Count("id"),
            left=Count("id", filter=left_chosen),
            tie=Count("id", filter=Q(choice="tie")),
        )
        .order_by()
    ):
        rater_id = row.pop("rater")
        counted[rater_id] = row | {"right": row["judgments"] - row["left"] - row["tie"]}
    for row in (
        controls.values("rater")
        .annotate(
            gold_answers=Count("id", filter=Q(correct__isnull=False)),
            gold_correct=Count("id", filter=Q(correct=True)),
        )
        .order_by()
    ):
        counted.setdefault(row.pop("rater"), {}).update(row)
    floor = timedelta(milliseconds=study.min_response_time_ms)
    server_time = ExpressionWrapper(F("completed_at") - F("shown_at"), output_field=DurationField())
    for row in (
        answered.annotate(server_time=server_time)
        .values("rater")
        .annotate(items=Count("id"), fast_items=Count("id", filter=Q(server_time__lt=floor)))
        .order_by()
    ):
        counted.setdefault(row.pop("rater"), {}).update(row)
    return {rater_id: RaterAnswerStats(**fields) for rater_id, fields in counted.items()}


# Told to a rater whose work is over before they answered the minimum for a code (a late rater of a full study).
MESSAGE_NO_WORK = (
    "There is no work for you in this study right now: it is full, or has nothing left for you to rate. "
    "There is no completion code (it needs {needed} answered item{needed_plural}; you answered {done}). "
    "Please return the study on {platform}."
)
RETURN_WHERE = {
    Rater.Platform.PROLIFIC: "Prolific (Return submission)",
    Rater.Platform.MTURK: "Mechanical Turk (Return the HIT)",
}
RETURN_ELSEWHERE = "the platform that sent you here"
MESSAGE_CODE = "You have rated everything there was for you. Thank you!"


@dataclass(frozen=True)
class Completion:
    """What a rater whose work is over gets. Having answered at least the study's min_answers_for_code items
    (`earned`): the completion code, and where to go (the crowd platform) if set. Else no code and no redirect:
    `message` tells them there is no work for them and to return the study."""

    code: str
    redirect_url: str
    earned: bool = True
    message: str = MESSAGE_CODE


def rater_completion(*, rater: Rater, nothing_left: bool = False) -> Completion | None:
    """The rater's completion once their work is over (recorded complete, or `nothing_left`: serving just found
    nothing for them); None before. Read afresh (1 query): the answer path counts answers in the database."""
    row = Rater.objects.filter(pk=rater.pk).values_list("completed_at", "n_answered", "platform").first()
    if row is None or (row[0] is None and not nothing_left):
        return None
    study, (_, done, platform) = rater.study, row
    if done < study.min_answers_for_code:
        needed = study.min_answers_for_code
        message = MESSAGE_NO_WORK.format(
            needed=needed,
            needed_plural="" if needed == 1 else "s",
            done=done,
            platform=RETURN_WHERE.get(platform, RETURN_ELSEWHERE),
        )
        return Completion(code="", redirect_url="", earned=False, message=message)
    return Completion(code=study.completion_code, redirect_url=study.completion_url)
