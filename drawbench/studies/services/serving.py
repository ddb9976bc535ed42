"""Serving: which items a rater is shown next, claimed under concurrency, held under a lease, reclaimed when
abandoned."""

import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from drawbench.studies import sql
from drawbench.studies.models import (
    Assignment,
    Comparison,
    GoldTrial,
    Rater,
    Study,
)
from drawbench.studies.selectors import (
    RaterProgress,
    assignment_pending_for_rater,
    gold_trial_unseen_for_rater,
    rater_progress_from_counts,
)
from drawbench.studies.services.errors import ERROR_NOT_ENOUGH_SAMPLES, ERROR_STUDY_NOT_OPEN, StudyNotOpen

# Rows built here from rows just read (under lock where it matters); the database holds the constraints. Validating
# them again would cost a query per foreign key and per constraint on the path every answer takes.
ASSIGNMENT_TRUSTED_FIELDS = ("rater", "comparison", "gold_trial", "left_model")

# At most this many abandoned assignments are reclaimed per sweep (a sweep runs when a rater finds no free slot).
SWEEP_BATCH = 500


def rater_clock() -> datetime:
    """The rater path's clock (serving and answering read it, nothing else): a seam for tests, as
    contrib/auth/tokens.py leaves _now()."""
    return timezone.now()


@dataclass(frozen=True)
class Lease:
    """The one lease rule of every path: a comparison is held until `until`; an item shown again (a reload, or the
    next item of a batch) keeps its lease while at least half of it is left, else it gets a new one (renewing is a
    write, and the answer path runs on every answer)."""

    until: datetime
    renew_before: datetime

    @classmethod
    def at(cls, *, study: Study, now: datetime) -> "Lease":
        length = timedelta(seconds=study.assignment_timeout_s)
        return cls(until=now + length, renew_before=now + length / 2)

    def due(self, expires_at: datetime | None) -> bool:
        return expires_at is None or expires_at < self.renew_before


def display_rng() -> random.Random:
    """The generator of one request's draws (sides, image orders, gold slots): seeded with 128 bits from the
    operating system, so that nothing a rater sees predicts the next draw, without a system call per number (a
    batch draws hundreds)."""
    return random.Random(secrets.randbits(128))


def comparison_slot_take(*, comparison_id: int, study: Study) -> bool:
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
    now = now or rater_clock()
    expired = list(
        Assignment.objects.select_for_update(of=("self",))
        .filter(
            rater__study=study,
            kind=Assignment.Kind.COMPARISON,
            # A first item holds no slot: there is nothing to give back.
            holds_slot=True,
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


def assignment_build(
    *,
    rater: Rater,
    study: Study,
    comparison: Comparison,
    rng: random.Random,
    now: datetime,
    samples: list[tuple[int, int, str]] | None = None,
    holds_slot: bool = True,
) -> Assignment:
    """Draw which model is on the left and which samples are shown, in which order: the assignment, not saved yet
    (sql.assignments_insert saves it).

    With more samples than the study shows per side, the shown ones are drawn at random among them. `samples`: the
    comparison's (sample id, model id, display name) when the caller has read them already. The display names ride
    along on the instance (`image_names`) so that showing it costs no query. `holds_slot` False: the comparison's slot
    was not taken (a rater's first item; see _batch_serve).
    """
    k = study.samples_per_side
    found: dict[int, list[tuple[int, str]]] = {comparison.model_a_id: [], comparison.model_b_id: []}
    if samples is None:
        samples = sql.samples_of(study=study, prompt_id=comparison.prompt_id, model_ids=list(found))
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
        expires_at=Lease.at(study=study, now=now).until,
        holds_slot=holds_slot,
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


@dataclass
class RaterCounts:
    """Read with the rater's lock: items answered (practice aside), practice items served, comparisons held (not
    reclaimed), the study's comparisons and gold trials, the silent gold trials and comparisons the rater was served,
    and when they last answered. A count the study's settings made moot when the lock was taken is None; `complete`
    reads them all if the settings changed since."""

    done: int
    practice: int | None
    held: int | None
    comparisons: int
    gold_trials: int | None
    gold_served: int | None = None
    comparisons_served: int | None = None
    last_answered_at: datetime | None = None

    @classmethod
    def of(cls, counts: tuple) -> "RaterCounts":
        return cls(*counts)

    def complete(self, *, rater_id: int, study: Study) -> "RaterCounts":
        needed = (
            (study.practice_items and self.practice is None)
            or (study.max_comparisons_per_rater is not None and self.held is None)
            or (study.gold_rate > 0 and (self.gold_trials is None or self.gold_served is None))
        )
        if needed:
            counts = sql.rater_counts(rater_id=rater_id)
            _, self.practice, self.held, _, self.gold_trials, self.gold_served, self.comparisons_served, _ = counts
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
    return next_counted(rater=rater, rng=rng or display_rng())[0]


def assignment_serve_on_start(*, rater: Rater) -> Assignment | None:
    """Serve a rater who has just started (or come back) their item, in that POST: reading it afterwards is a GET
    that writes nothing. Nothing (a study waiting for consent, closed meanwhile, or with nothing left for them):
    their GET says so."""
    if rater.study.consent_text and rater.consented_at is None:
        return None
    try:
        return assignment_next_for_rater(rater=rater)
    except StudyNotOpen:
        return None


def rater_has_work(*, rater: Rater) -> bool:
    """Whether serving would find the rater a comparison now (a read: nothing is claimed; a GET asks it)."""
    study = rater.study
    if study.status != Study.Status.OPEN:
        return False
    if study.max_comparisons_per_rater is not None:
        held = Assignment.objects.filter(rater=rater, kind=Assignment.Kind.COMPARISON, released_at__isnull=True)
        if held.count() >= study.max_comparisons_per_rater:
            return False
    return sql.comparison_pick(rater_id=rater.pk, study=study) is not None


# PostgreSQL's SQLSTATE for "deadlock detected". Claims lock comparison rows in id order, yet raters arriving
# together can still meet in a cycle of row and tuple locks inside one claim statement (seen about once in 50 runs of
# 24 raters started at one barrier on a loaded 2-core machine). PostgreSQL then aborts one transaction, which is
# safe to run again: everything it did was rolled back.
DEADLOCK_SQLSTATE = "40P01"
DEADLOCK_ATTEMPTS = 5


def atomic_retrying_deadlocks(work):
    """``work()`` in a transaction of its own, run again (up to DEADLOCK_ATTEMPTS times in all, after a short random
    pause) where the database broke a deadlock by aborting it; any other error, or a deadlock on the last attempt,
    is raised. ``work`` changes nothing but the database, whose changes the abort rolled back, so running it again
    records an answer or claims a slot once."""
    for attempt in range(DEADLOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            # Django's error is raised from the driver's, which carries the SQLSTATE.
            if attempt == DEADLOCK_ATTEMPTS - 1 or getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_SQLSTATE:
                raise
            time.sleep(random.uniform(0, 0.005 * 2**attempt))


def next_counted(*, rater: Rater, rng: random.Random) -> tuple[Assignment | None, RaterCounts | None]:
    """assignment_next_for_rater, and the rater's counts as read with their lock (None after a miss)."""
    served, counts = _serve_under_lock(rater=rater, rng=rng, wait=False)
    if served is not NO_FREE_SLOT:
        return served, counts
    return next_after_miss(rater=rater, rng=rng), None


NO_FREE_SLOT = object()


def _serve_under_lock(*, rater: Rater, rng: random.Random, wait: bool):
    """next_locked under the rater's lock, in a transaction of its own (run again after a deadlock): what it served
    and the counts read with the lock."""

    def work():
        locked, counts = _rater_lock(rater=rater)
        return next_locked(rater=locked, counts=counts, rng=rng, wait=wait), counts

    return atomic_retrying_deadlocks(work)


def _rater_lock(*, rater: Rater) -> tuple[Rater, RaterCounts]:
    """Lock the rater's row (their own concurrent requests, two tabs or a double click, queue up and agree) and read
    their study afresh and their counts, in one statement."""
    cached = rater.study if Rater.study.is_cached(rater) else None
    study, counts = sql.rater_lock(rater_id=rater.pk, study=cached)
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(ERROR_STUDY_NOT_OPEN)
    rater.study = study
    return rater, RaterCounts.of(counts).complete(rater_id=rater.pk, study=study)


def next_after_miss(*, rater: Rater, rng: random.Random) -> Assignment | None:
    # Every slot left was taken or locked by a concurrent claim. Reclaim abandoned slots (in a transaction of its
    # own, so that the rows it touched are not held while waiting below), then look again, this time waiting for
    # locked rows rather than skipping them: a locked row may still have room once its claim commits.
    atomic_retrying_deadlocks(lambda: assignments_release_expired(study=rater.study))
    served, _ = _serve_under_lock(rater=rater, rng=rng, wait=True)
    return None if served is NO_FREE_SLOT else served


def next_locked(*, rater: Rater, counts: RaterCounts, rng: random.Random, wait: bool):
    """assignment_next_for_rater's rules, under the rater's lock; NO_FREE_SLOT when a slot may still come free."""
    study = rater.study
    at = rater_clock()
    pending = assignment_pending_for_rater(rater=rater) if sql.pending_count(rater_id=rater.pk) else None
    if pending is not None:
        lease = Lease.at(study=study, now=at)
        if pending.kind == Assignment.Kind.COMPARISON and lease.due(pending.expires_at):
            pending.expires_at = lease.until
            pending.save(update_fields=["expires_at"])
        return pending

    if study.practice_items and counts.practice < study.practice_items:
        trial = gold_trial_unseen_for_rater(rater=rater, practice=True)
        if trial is not None:
            practice = _assignment_build_control(
                rater=rater, trial=trial, kind=Assignment.Kind.PRACTICE, rng=rng, now=at
            )
            sql.assignments_insert(assignments=[practice])
            return practice
    if counts.done == 0 and settings.DRAWBENCH_RATER_FIRST_ITEM_PROVISIONAL:
        return _first_item(rater=rater, counts=counts, rng=rng, now=at)
    batch = _batch_serve(rater=rater, counts=counts, rng=rng, wait=wait, now=at)
    if batch is None:
        return None
    return batch[0] if batch else NO_FREE_SLOT


def _first_item(*, rater: Rater, counts: RaterCounts, rng: random.Random, now: datetime) -> Assignment | None:
    """A rater who has answered nothing yet is served one comparison that holds no slot: it takes its comparison's
    slot when it is answered (if the comparison still has room then). Visitors who open the study and leave, however
    many, hold nothing that honest raters need; a first item is never a gold trial. None: nothing left for them."""
    study = rater.study
    if study.max_comparisons_per_rater is not None and counts.held >= study.max_comparisons_per_rater:
        return None
    picked = sql.comparison_pick(rater_id=rater.pk, study=study)
    if picked is None:
        return None
    comparison, samples = picked
    first = assignment_build(
        rater=rater, study=study, comparison=comparison, rng=rng, now=now, samples=samples, holds_slot=False
    )
    sql.assignments_insert(assignments=[first])
    return first


def _batch_serve(
    *, rater: Rater, counts: RaterCounts, rng: random.Random, wait: bool, now: datetime
) -> list[Assignment] | None:
    """Serve the rater a batch of settings.DRAWBENCH_RATER_BATCH items (fewer at their cap), under their lock: the
    items saved, in the order they will see them; None at their cap; empty when no slot is free.

    A rater's first batch (after their first item) has a size drawn between 1 and the batch size
    (settings.DRAWBENCH_RATER_STAGGER): raters
    who arrive together (a crowd platform's launch) and work at one pace would otherwise run out of their batches at
    the same moment, every batch, and claim their next ones all at once, contending for the same least-rated
    comparisons (on a 2-core machine, 64 such raters halved the answers served for 0.4 s every 2 s)."""
    study = rater.study
    size = settings.DRAWBENCH_RATER_BATCH
    # A rater's first batch comes after their first item when that item was provisional (see _first_item).
    if counts.done == int(settings.DRAWBENCH_RATER_FIRST_ITEM_PROVISIONAL) and settings.DRAWBENCH_RATER_STAGGER:
        size = rng.randint(1, size)
    if study.max_comparisons_per_rater is not None:
        if counts.held >= study.max_comparisons_per_rater:
            return None
        size = min(size, study.max_comparisons_per_rater - counts.held)
    batch = _batch_draw(rater=rater, study=study, counts=counts, size=size, rng=rng, wait=wait, now=now)
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
            if counts.done == 0 and settings.DRAWBENCH_RATER_FIRST_ITEM_PROVISIONAL:
                return []
            return _batch_serve(rater=locked, counts=counts, rng=rng, wait=False, now=rater_clock()) or []
    except StudyNotOpen:
        return []


def _batch_draw(
    *, rater: Rater, study: Study, counts: RaterCounts, size: int, rng: random.Random, wait: bool, now: datetime
) -> list[Assignment]:
    """The rater's next items, in the order they will see them, not saved yet: up to `size` comparisons, a slot of
    each claimed here (see sql.comparisons_claim), with silent gold trials among them. Serving several at once
    spreads the claim's cost over several answers; each holds its slot under the same lease, renewed when shown.

    Gold: before each comparison, a gold trial the rater has not seen with probability gold_rate, only while it
    keeps the rater's gold share within the rate, plus one (gold ≤ gold_rate × items + 1 at every point of what they
    answer). No comparison left for them: no gold either (nothing would be left but controls)."""
    claimed = sql.comparisons_claim(rater_id=rater.pk, study=study, wait=wait, limit=size)
    comparisons = [
        assignment_build(rater=rater, study=study, comparison=comparison, rng=rng, now=now, samples=samples)
        for comparison, samples in claimed
    ]
    rng.shuffle(comparisons)
    if not study.gold_rate or wait:
        return comparisons
    gold_served, comparisons_served = counts.gold_served or 0, counts.comparisons_served or 0
    batch: list[Assignment] = []
    shown_trials: list[int] = []
    for comparison in comparisons:
        within_share = gold_served <= study.gold_rate * (gold_served + comparisons_served + 1)
        if within_share and rng.random() < study.gold_rate:
            trial = gold_trial_unseen_for_rater(rater=rater, exclude=shown_trials)
            if trial is not None:
                shown_trials.append(trial.pk)
                batch.append(
                    _assignment_build_control(rater=rater, trial=trial, kind=Assignment.Kind.GOLD, rng=rng, now=now)
                )
                gold_served += 1
        batch.append(comparison)
        comparisons_served += 1
    counts.gold_served, counts.comparisons_served = gold_served, comparisons_served
    return batch
