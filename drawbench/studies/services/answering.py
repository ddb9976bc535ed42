"""Answers: one validation and one write rule for every path (the form, the JSON API, the one-statement SQL)."""

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection

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
from drawbench.studies.services import serving
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
    Lease,
    RaterCounts,
    atomic_retrying_deadlocks,
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

KEY_MAX_LENGTH = 64
CHOICE_MAX_LENGTH = 16
ANSWER_INPUT_FIELDS = ("key", "answers", "response_time_ms", "include_next")
ERROR_BODY_NOT_OBJECT = "The answer must be a JSON object with the fields {fields}."
ERROR_FIELD_UNKNOWN = "Unknown field {field!r}: an answer has the fields {fields}."
ERROR_FIELD_MISSING = "This field is required."
ERROR_KEY = "The key must be the item's key: 1 to {max} printable ASCII characters."
ERROR_ANSWERS_NOT_OBJECT = "The answers must be an object mapping each question to left, tie or right."
ERROR_ANSWER_NOT_TEXT = "The answer to {question!r} must be one of left, tie, right; got {value}."
ERROR_RESPONSE_TIME_TYPE = "The response time must be a whole number of milliseconds; got {value}."
ERROR_INCLUDE_NEXT = "include_next must be true or false; got {value}."


@dataclass(frozen=True)
class AnswerInput:
    """An answer as a rater sends it, its shape checked (answer_input): what it says is checked against the study by
    answer_errors, on every write path."""

    key: str
    answers: dict[str, str]
    response_time_ms: int
    include_next: bool = True


def _printable(value, max_length: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isascii() and value.isprintable()


def answer_input(body) -> AnswerInput:
    """The one check of an answer's shape, for the JSON API and the form alike: a mapping with the key, the answers
    ({question: choice}), the client's response time in ms and, optionally, include_next. Raises ValidationError
    {field: [message]} that says what is wrong; nothing has been read from or written to the database."""
    fields = ", ".join(ANSWER_INPUT_FIELDS)
    if not isinstance(body, Mapping):
        raise ValidationError({"non_field_errors": [ERROR_BODY_NOT_OBJECT.format(fields=fields)]})
    errors: dict[str, list[str]] = {}
    for name in body:
        if name not in ANSWER_INPUT_FIELDS:
            errors.setdefault(str(name)[:100], []).append(
                ERROR_FIELD_UNKNOWN.format(field=str(name)[:100], fields=fields)
            )
    key, answers, time_ms = body.get("key"), body.get("answers"), body.get("response_time_ms")
    include_next = body.get("include_next", True)
    for name in ("key", "answers", "response_time_ms"):
        if body.get(name) is None:
            errors.setdefault(name, []).append(ERROR_FIELD_MISSING)
    if key is not None and not _printable(key, KEY_MAX_LENGTH):
        errors.setdefault("key", []).append(ERROR_KEY.format(max=KEY_MAX_LENGTH))
    if answers is not None:
        if not isinstance(answers, Mapping):
            errors.setdefault("answers", []).append(ERROR_ANSWERS_NOT_OBJECT)
        else:
            for question, choice in answers.items():
                if not _printable(choice, CHOICE_MAX_LENGTH):
                    errors.setdefault("answers", []).append(
                        ERROR_ANSWER_NOT_TEXT.format(question=str(question)[:50], value=_shown(choice))
                    )
    if time_ms is not None and (message := _response_time_error(time_ms)):
        errors.setdefault("response_time_ms", []).append(message)
    if type(include_next) is not bool:
        errors.setdefault("include_next", []).append(ERROR_INCLUDE_NEXT.format(value=_shown(include_next)))
    if errors:
        raise ValidationError(errors)
    return AnswerInput(key=key, answers=dict(answers), response_time_ms=time_ms, include_next=include_next)


def _response_time_error(value) -> str | None:
    """The rule for the response time a client reports (kept for analysis only: "too fast" is the server's clock):
    a whole number of ms, from 0 to MAX_RESPONSE_TIME_MS."""
    if type(value) is not int:
        return ERROR_RESPONSE_TIME_TYPE.format(value=_shown(value))
    if not 0 <= value <= MAX_RESPONSE_TIME_MS:
        return ERROR_RESPONSE_TIME.format(max=MAX_RESPONSE_TIME_MS, value=_shown(value))
    return None


def _shown(value) -> str:
    """A value as an error message quotes it: short, whatever it is (an integer of thousands of digits included)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number too long to show"
    return text if len(text) <= 40 else text[:37] + "..."


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


def answer_errors(*, questions: Sequence[str], answers: Mapping[str, str], response_time_ms) -> list[str]:
    """The one validation of what an answer says, against the study's questions: every write path (the general one
    and the one-statement answer) calls it before writing anything. Empty: valid."""
    errors = []
    for question in questions:
        if not answers.get(question):
            errors.append(ERROR_ANSWER_MISSING.format(text=Question(question).label))
    for question, choice in answers.items():
        if question not in questions:
            errors.append(ERROR_ANSWER_UNEXPECTED.format(question=question))
        elif choice and choice not in DISPLAYED_CHOICES:
            errors.append(ERROR_CHOICE_UNKNOWN.format(choice=choice, question=question))
    if message := _response_time_error(response_time_ms):
        errors.append(message)
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

    def work():
        outcome, counts = _assignment_submit(rater=rater, key=key, answers=answers, response_time_ms=response_time_ms)
        served = next_locked(rater=outcome.assignment.rater, counts=counts, rng=rng, wait=False) if serve_next else None
        return outcome, counts, served

    try:
        outcome, counts, served = atomic_retrying_deadlocks(work)
    except IntegrityError as exc:
        # A concurrent submission of the same assignment won the race (the unique constraint caught it).
        raise AnswerConflict(ERROR_ASSIGNMENT_ANSWERED, code="conflict") from exc
    if served is NO_FREE_SLOT:
        outcome.next_assignment = next_after_miss(rater=rater, rng=rng)
        counts = None
    elif serve_next:
        outcome.next_assignment = served
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
    if study is None or study.status != Study.Status.OPEN or not key:
        return None
    if answer_errors(questions=study.questions, answers=answers, response_time_ms=response_time_ms):
        return None
    now = serving.rater_clock()
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
        lease=Lease.at(study=study, now=now),
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
    errors = answer_errors(questions=study.questions, answers=answers, response_time_ms=response_time_ms)
    if errors:
        raise ValidationError(errors)
    if assignment.kind == Assignment.Kind.COMPARISON and (
        assignment.released_at is not None or not assignment.holds_slot
    ):
        # Reclaimed, or a first item (which holds no slot until answered): it takes a slot now, if one is free.
        if not comparison_slot_take(comparison_id=assignment.comparison_id, study=study):
            raise AssignmentExpired(ERROR_ASSIGNMENT_EXPIRED, code="expired")
        if assignment.released_at is not None and counts.held is not None:
            counts.held += 1
        assignment.released_at, assignment.holds_slot = None, True

    judgments: list[Judgment] = []
    control_answers: list[ControlAnswer] = []
    now = serving.rater_clock()
    # Shown by the response to the rater's previous answer, or when served if that came later (the server's clock).
    assignment.shown_at = max(filter(None, (assignment.served_at, counts.last_answered_at)))
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
        sql.answer_record(
            assignment_id=assignment.pk, judgments=judgments, completed_at=now, shown_at=assignment.shown_at
        )
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
        sql.assignment_complete(assignment_id=assignment.pk, completed_at=now, shown_at=assignment.shown_at)
    assignment.completed_at = now
    counted = assignment.kind != Assignment.Kind.PRACTICE
    sql.rater_answered(rater_id=rater.pk, at=now, counted=counted)
    counts.done += counted
    counts.last_answered_at = now
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
