"""Answers: one validation and one write rule for every path (the form, the JSON API, the one-statement SQL)."""

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from drawbench.studies import sql
from drawbench.studies.models import (
    Assignment,
    Choice,
    ControlAnswer,
    DisplayedChoice,
    GoldTrial,
    Judgment,
    Question,
    Rater,
    Study,
)
from drawbench.studies.selectors import (
    RaterProgress,
    rater_progress,
)
from drawbench.studies.services.errors import (
    ERROR_ANSWER_MISSING,
    ERROR_ANSWER_UNEXPECTED,
    ERROR_ASSIGNMENT_ANSWERED,
    ERROR_ASSIGNMENT_EXPIRED,
    ERROR_ASSIGNMENT_UNKNOWN,
    ERROR_CHOICE_UNKNOWN,
    ERROR_RESPONSE_TIME,
    ERROR_STUDY_NOT_OPEN,
    AnswerConflict,
    AssignmentExpired,
    AssignmentUnknown,
    StudyNotOpen,
)
from drawbench.studies.services.raters import rater_flags_refresh
from drawbench.studies.services.serving import (
    NO_FREE_SLOT,
    RaterCounts,
    comparison_slot_take,
    display_rng,
    next_after_miss,
    next_counted,
    next_locked,
)

JUDGMENT_TRUSTED_FIELDS = ("assignment", "comparison", "rater", "left_model")
CONTROL_ANSWER_TRUSTED_FIELDS = ("assignment", "rater", "gold_trial")
DISPLAYED_CHOICES: tuple[str, ...] = tuple(DisplayedChoice.values)
# A page left open over a night still submits; beyond a day the number is no response time at all.
MAX_RESPONSE_TIME_MS = 24 * 60 * 60 * 1000

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
                served = next_locked(rater=outcome.assignment.rater, counts=counts, rng=rng, wait=False)
                missed = served is NO_FREE_SLOT
                outcome.next_assignment = None if missed else served
    except IntegrityError as exc:
        # A concurrent submission of the same assignment won the race (the unique constraint caught it).
        raise AnswerConflict(ERROR_ASSIGNMENT_ANSWERED, code="conflict") from exc
    if missed:
        outcome.next_assignment = next_after_miss(rater=rater, rng=rng)
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
        outcome.next_assignment, counts = next_counted(rater=rater, rng=rng or display_rng())
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
        if not comparison_slot_take(comparison_id=assignment.comparison_id, study=study):
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
