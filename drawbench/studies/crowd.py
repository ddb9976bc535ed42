"""Crowd operations, read from a study: who to approve or reject on the crowd platform (and why, from the quality
flags), the bonus file, and how long a rater's session takes and what it costs.

The files are in the platforms' own formats: Prolific's bulk approval and bulk bonus ("participant_id" lists;
"participant_id,amount" lines), MTurk's batch results upload (HITId, AssignmentId, WorkerId, Approve, Reject).
A rater is listed once their work is over (they reached the finish page, or had nothing left); one with a quality
flag is rejected with the flag's reason, which the platform shows to the worker.
"""

import statistics
from dataclasses import dataclass

from django.db.models import DurationField, ExpressionWrapper, F

from drawbench.studies.models import Assignment, Rater, RaterFlag, Study

# Seconds per item assumed before a pilot gives its own median (reading a caption, looking at two sets of 8 images,
# answering two questions).
DEFAULT_ITEM_SECONDS = 20.0
# Answered items needed before their median replaces the default.
PILOT_MIN_ITEMS = 20
REJECT_REASONS = {
    RaterFlag.Reason.FAILED_GOLD: "Failed the attention checks ({detail}).",
    RaterFlag.Reason.TOO_FAST: "Answered faster than the images can be looked at ({detail}).",
    RaterFlag.Reason.ALWAYS_LEFT: "Gave the same answer to every item ({detail}).",
    RaterFlag.Reason.ALWAYS_RIGHT: "Gave the same answer to every item ({detail}).",
    RaterFlag.Reason.ALWAYS_TIE: "Gave the same answer to every item ({detail}).",
}
PLATFORM_COLUMNS = {
    Rater.Platform.PROLIFIC: ["participant_id", "session_id", "decision", "reason", "items_answered"],
    Rater.Platform.MTURK: ["HITId", "AssignmentId", "WorkerId", "Approve", "Reject"],
}
BONUS_COLUMNS = {
    Rater.Platform.PROLIFIC: ["participant_id", "amount"],
    Rater.Platform.MTURK: ["WorkerId", "AssignmentId", "BonusAmount", "Reason"],
}


@dataclass(frozen=True)
class Decision:
    rater: Rater
    approve: bool
    reason: str


def rater_decisions(*, study: Study, platform: str) -> list[Decision]:
    """Each rater of the platform whose work is over, approved or rejected (with the reason from their flags).
    Raters who got no completion code (fewer answers than min_answers_for_code) are left out: they were told to
    return the study."""
    raters = list(
        Rater.objects.filter(study=study, platform=platform)
        .exclude(external_id="")
        .filter(n_answered__gte=study.min_answers_for_code)
        .exclude(finished_at__isnull=True, completed_at__isnull=True)
        .order_by("created_at", "pk")
    )
    flags: dict[int, list[str]] = {}
    for rater_id, reason, detail in (
        RaterFlag.objects.filter(rater__in=raters).order_by("reason").values_list("rater_id", "reason", "detail")
    ):
        flags.setdefault(rater_id, []).append(REJECT_REASONS[reason].format(detail=detail or reason))
    return [
        Decision(rater=rater, approve=rater.pk not in flags, reason=" ".join(dict.fromkeys(flags.get(rater.pk, []))))
        for rater in raters
    ]


def approval_rows(*, study: Study, platform: str) -> list[dict[str, str | int]]:
    """The approval file's rows in the platform's own columns (PLATFORM_COLUMNS)."""
    rows: list[dict[str, str | int]] = []
    for decision in rater_decisions(study=study, platform=platform):
        rater = decision.rater
        if platform == Rater.Platform.MTURK:
            rows.append(
                {
                    "HITId": rater.platform_study_id,
                    "AssignmentId": rater.platform_session_id,
                    "WorkerId": rater.external_id,
                    "Approve": "x" if decision.approve else "",
                    "Reject": "" if decision.approve else decision.reason,
                }
            )
        else:
            rows.append(
                {
                    "participant_id": rater.external_id,
                    "session_id": rater.platform_session_id,
                    "decision": "APPROVE" if decision.approve else "REJECT",
                    "reason": decision.reason,
                    "items_answered": rater.n_answered,
                }
            )
    return rows


def bonus_rows(*, study: Study, platform: str, amount: str, reason: str = "") -> list[dict[str, str]]:
    """A bonus of `amount` (as the platform takes it: "1.50") for every approved rater."""
    rows = []
    for decision in rater_decisions(study=study, platform=platform):
        if not decision.approve:
            continue
        rater = decision.rater
        if platform == Rater.Platform.MTURK:
            rows.append(
                {
                    "WorkerId": rater.external_id,
                    "AssignmentId": rater.platform_session_id,
                    "BonusAmount": amount,
                    "Reason": reason or f"Bonus for study {study.name}",
                }
            )
        else:
            rows.append({"participant_id": rater.external_id, "amount": amount})
    return rows


@dataclass(frozen=True)
class TimeEstimate:
    """A rater's session: items, seconds per item (a pilot's median, or the default), minutes, and cost."""

    items_per_rater: int
    seconds_per_item: float
    source: str
    pilot_items: int
    minutes_per_rater: float
    hourly_pay: float | None
    cost_per_rater: float | None
    raters_needed: int
    total_cost: float | None


def time_estimate(*, study: Study, hourly_pay: float | None = None) -> TimeEstimate:
    """How long a rater's session takes and what it costs at `hourly_pay`: items a rater is served at most
    (max_comparisons_per_rater, or every comparison; plus practice items and the expected gold at gold_rate) times
    the median server time per item of the study's answered items once a pilot has PILOT_MIN_ITEMS of them, else
    DEFAULT_ITEM_SECONDS. Raters needed: enough to give every comparison its ratings."""
    comparisons = study.n_comparisons
    per_rater = min(comparisons, study.max_comparisons_per_rater or comparisons)
    if study.gold_rate and study.gold_rate < 1:
        per_rater += round(per_rater * study.gold_rate / (1 - study.gold_rate))
    per_rater += study.practice_items
    answered = Assignment.objects.filter(rater__study=study, completed_at__isnull=False, shown_at__isnull=False)
    pilot_items = answered.count()
    per_item, source = DEFAULT_ITEM_SECONDS, "default"
    if pilot_items >= PILOT_MIN_ITEMS:
        # The median in the database: the middle one or two server times, not every answered item's (a study page
        # view would otherwise read them all).
        server_time = ExpressionWrapper(F("completed_at") - F("shown_at"), output_field=DurationField())
        middle = [
            d.total_seconds()
            for d in answered.annotate(server_time=server_time)
            .order_by("server_time")
            .values_list("server_time", flat=True)[(pilot_items - 1) // 2 : pilot_items // 2 + 1]
        ]
        if middle:
            per_item, source = statistics.fmean(middle), "pilot median"
    minutes = per_rater * per_item / 60
    cost = None if hourly_pay is None else round(minutes / 60 * hourly_pay, 2)
    comparisons_per_rater = max(1, min(comparisons, study.max_comparisons_per_rater or comparisons))
    raters = -(-comparisons * study.ratings_per_comparison // comparisons_per_rater) if comparisons else 0
    return TimeEstimate(
        items_per_rater=per_rater,
        seconds_per_item=round(per_item, 1),
        source=source,
        pilot_items=pilot_items,
        minutes_per_rater=round(minutes, 1),
        hourly_pay=hourly_pay,
        cost_per_rater=cost,
        raters_needed=raters,
        total_cost=None if cost is None else round(cost * raters, 2),
    )
