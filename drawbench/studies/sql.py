"""Hand-written SQL for the statements every rater request runs (answer, then serve the next item).

Compiling these through the ORM cost more CPU than everything else a request does together (the lock statement
alone, with its counts, was about 3 ms of Python per request): here each is a constant string. They run on
PostgreSQL and SQLite alike; row locks (FOR UPDATE) are added only where the database has them. Services call
them inside their transactions and keep every rule; nothing here decides anything.
"""

import functools
import json
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from drawbench.catalog.models import Prompt, Sample
from drawbench.studies.models import Assignment, Comparison, DisplayImage, GoldTrial, Judgment, Rater, Study

ASSIGNMENT = Assignment._meta.db_table
COMPARISON = Comparison._meta.db_table
DISPLAY_IMAGE = DisplayImage._meta.db_table
GOLD_TRIAL = GoldTrial._meta.db_table
JUDGMENT = Judgment._meta.db_table
PROMPT = Prompt._meta.db_table
RATER = Rater._meta.db_table
SAMPLE = Sample._meta.db_table
STUDY = Study._meta.db_table


def _literal(value: str) -> str:
    """A model's choice value written into a statement as a constant: read from the model (never spelled here), and
    constant text, so that each statement is prepared once per connection."""
    if not value.replace("_", "").isalnum():
        raise ValueError(f"Not a plain choice value: {value!r}")
    return f"'{value}'"


KIND_COMPARISON = _literal(Assignment.Kind.COMPARISON)
KIND_GOLD = _literal(Assignment.Kind.GOLD)
KIND_PRACTICE = _literal(Assignment.Kind.PRACTICE)
STUDY_OPEN = _literal(Study.Status.OPEN)

# A rater's counts and their study's, as columns and scalar subqueries on the rater's row `r` (indexes: assignment
# (rater, comparison), goldtrial (study)), in RaterCounts' order: answered (practice aside: kept
# on the rater's row by the answer path, since counting them grew with every answer), practice served, comparisons
# held, the study's comparisons (counted when it was created) and gold trials, the gold trials and comparisons the rater
# was served, and when they last answered.
COUNT_DONE = "r.n_answered"
COUNT_PRACTICE = f"(SELECT COUNT(*) FROM {ASSIGNMENT} x WHERE x.rater_id = r.id AND x.kind = {KIND_PRACTICE})"
COUNT_HELD = (
    f"(SELECT COUNT(*) FROM {ASSIGNMENT} x WHERE x.rater_id = r.id AND x.kind = {KIND_COMPARISON}"
    " AND x.released_at IS NULL)"
)
COUNT_COMPARISONS = f"(SELECT x.n_comparisons FROM {STUDY} x WHERE x.id = r.study_id)"
COUNT_GOLD_TRIALS = f"(SELECT COUNT(*) FROM {GOLD_TRIAL} x WHERE x.study_id = r.study_id)"
# What the rater has been served so far (the gold share is kept on it): silent gold trials, and comparisons.
COUNT_GOLD_SERVED = f"(SELECT COUNT(*) FROM {ASSIGNMENT} x WHERE x.rater_id = r.id AND x.kind = {KIND_GOLD})"
COUNT_COMPARISONS_SERVED = (
    f"(SELECT COUNT(*) FROM {ASSIGNMENT} x WHERE x.rater_id = r.id AND x.kind = {KIND_COMPARISON})"
)
# A count the study's settings make moot is read as NULL, which costs nothing.
SKIPPED = "NULL"


def rater_counts_sql(study: Study | None) -> str:
    """The counts a rater of `study` needs (all of them when the study is not known yet)."""
    return ", ".join(
        [
            COUNT_DONE,
            COUNT_PRACTICE if study is None or study.practice_items else SKIPPED,
            COUNT_HELD if study is None or study.max_comparisons_per_rater is not None else SKIPPED,
            COUNT_COMPARISONS,
            COUNT_GOLD_TRIALS if study is None or study.gold_rate > 0 else SKIPPED,
            COUNT_GOLD_SERVED if study is None or study.gold_rate > 0 else SKIPPED,
            COUNT_COMPARISONS_SERVED if study is None or study.gold_rate > 0 else SKIPPED,
            "r.last_answered_at",
        ]
    )


ASSIGNMENT_COLUMNS = tuple(field.column for field in Assignment._meta.concrete_fields)
STUDY_FIELDS = [field.attname for field in Study._meta.concrete_fields]
STUDY_COLUMNS = ", ".join(f"s.{field.column}" for field in Study._meta.concrete_fields)


def _lock_mode() -> str:
    """The row lock taken on rows about to be changed: NO KEY UPDATE where the database has it (PostgreSQL), which
    excludes the other lockers as FOR UPDATE does but not the key-share locks that foreign-key checks take. Inserting
    a judgment checks its comparison and rater that way: under FOR UPDATE, every answer to a comparison that a
    concurrent claim had locked waited for that claim to commit."""
    return "FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else "FOR UPDATE"


def _lock(*tables: str) -> str:
    return f" {_lock_mode()} OF {', '.join(tables)}" if connection.features.has_select_for_update_of else ""


@functools.cache
def _field_names(model) -> tuple[str, ...]:
    return tuple(field.attname for field in model._meta.concrete_fields)


@functools.cache
def _converters(model, vendor: str, names: tuple[str, ...]) -> list:
    """Per field named, the converters the ORM applies to a value read from the database (JSON from text,
    booleans and aware datetimes on SQLite...): a raw cursor applies none."""
    fields = {field.attname: field for field in model._meta.concrete_fields}
    converters = []
    for name in names:
        column = fields[name].get_col(model._meta.db_table)
        converters.append(
            (column, connection.ops.get_db_converters(column) + fields[name].get_db_converters(connection))
        )
    return converters


def _instance(model, values, names: tuple[str, ...] | None = None):
    """A model instance from a row of its concrete fields (all of them, or those in `names`, in the order of the
    model's fields; the others deferred), converted as the ORM does."""
    names = names or _field_names(model)
    converted = []
    for value, (column, converters) in zip(values, _converters(model, connection.vendor, names), strict=True):
        for converter in converters:
            value = converter(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, names, converted)


def _plain(value):
    """A value as JSON carries it to jsonb_to_recordset (a timestamp as ISO 8601 text, with its offset)."""
    return value.isoformat() if isinstance(value, datetime) else value


def _counts(values) -> tuple:
    """A rater's counts as read (see rater_counts_sql), the last answer's time converted as the ORM does."""
    *counts, last_answered_at = values
    [(column, converters)] = _converters(Rater, connection.vendor, ("last_answered_at",))
    for converter in converters:
        last_answered_at = converter(last_answered_at, column, connection)
    return (*counts, last_answered_at)


def _study_from_row(values) -> Study:
    return _instance(Study, values)


def _assignment_from_row(values) -> Assignment:
    return _instance(Assignment, values)


@dataclass
class LockedAssignment:
    assignment: Assignment
    model_a_id: int | None
    study: Study
    counts: tuple


def assignment_lock(*, rater_id: int, key: str, study: Study | None = None) -> LockedAssignment | None:
    """Lock the rater's row, then their assignment with this key (the order every path takes), and read the
    assignment, its comparison's model A, the study afresh and the rater's counts (those `study`, as last read,
    needs; None for the others). None: no such key."""
    columns = ", ".join(f"a.{column}" for column in ASSIGNMENT_COLUMNS)
    sql = (
        f"SELECT {columns}, c.model_a_id, {STUDY_COLUMNS}, {rater_counts_sql(study)}"
        f" FROM {RATER} r JOIN {ASSIGNMENT} a ON a.rater_id = r.id AND a.key = %s"
        f" JOIN {STUDY} s ON s.id = r.study_id LEFT JOIN {COMPARISON} c ON c.id = a.comparison_id"
        f" WHERE r.id = %s{_lock('r', 'a')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, rater_id])
        row = cursor.fetchone()
    if row is None:
        return None
    n, m = len(ASSIGNMENT_COLUMNS), len(STUDY_FIELDS)
    return LockedAssignment(
        assignment=_assignment_from_row(row[:n]),
        model_a_id=row[n],
        study=_study_from_row(row[n + 1 : n + 1 + m]),
        counts=_counts(row[n + 1 + m :]),
    )


def rater_counts(*, rater_id: int) -> tuple:
    """All of a rater's counts (for when the study's settings changed since the lock chose which to read)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {rater_counts_sql(None)} FROM {RATER} r WHERE r.id = %s", [rater_id])
        return _counts(cursor.fetchone())


def _pending_count(*, up_to: int, other_than_key: bool = False) -> str:
    """SQL: how many items a rater holds (served, neither answered nor reclaimed: the rows of the
    assignment_pending_by_rater index), counted up to `up_to`. Parameters: the rater's id[, a key left out].

    Read in that index's order, so that the planner takes it whatever the statistics say: with statistics in which
    every assignment looked pending (rater_load's fixture), the plain count read all of the rater's assignments
    through the (rater, comparison) index instead, on every answer."""
    other = " AND q.key <> %s" if other_than_key else ""
    return (
        f"(SELECT COUNT(*) FROM (SELECT 1 FROM {ASSIGNMENT} q WHERE q.rater_id = %s AND q.completed_at IS NULL"
        f" AND q.released_at IS NULL{other} ORDER BY q.served_at, q.id LIMIT {int(up_to)}) q)"
    )


def pending_count(*, rater_id: int, up_to: int = 1) -> int:
    """How many items the rater has served and not answered (nor reclaimed), counted up to `up_to`: index probes."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_pending_count(up_to=up_to)}", [rater_id])
        return cursor.fetchone()[0]


def rater_by_access_token(*, token: str) -> Rater | None:
    """The rater with this API token and their study (the token authentication of every API request). On
    PostgreSQL the study row's version (its xmin, which every update changes) comes along as
    `rater.study_version`: answer_and_next can then tell whether the study is still as read here."""
    rater_fields = [field.attname for field in Rater._meta.concrete_fields]
    columns = ", ".join(f"r.{field.column}" for field in Rater._meta.concrete_fields)
    version = "s.xmin::text" if connection.vendor == "postgresql" else "NULL"
    sql = (
        f"SELECT {columns}, {STUDY_COLUMNS}, {version} FROM {RATER} r JOIN {STUDY} s ON s.id = r.study_id"
        " WHERE r.access_token = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [token])
        row = cursor.fetchone()
    if row is None:
        return None
    n = len(rater_fields)
    rater = _instance(Rater, row[:n])
    rater.study = _study_from_row(row[n:-1])
    rater.study_version = row[-1]
    return rater


def rater_lock(*, rater_id: int, study: Study | None = None) -> tuple[Study, tuple]:
    """Lock the rater's row; their study, read afresh, and their counts (as assignment_lock)."""
    sql = (
        f"SELECT {STUDY_COLUMNS}, {rater_counts_sql(study)} FROM {RATER} r JOIN {STUDY} s ON s.id = r.study_id"
        f" WHERE r.id = %s{_lock('r')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [rater_id])
        row = cursor.fetchone()
    if row is None:
        raise Rater.DoesNotExist(f"Rater {rater_id} does not exist (any more).")
    m = len(STUDY_FIELDS)
    return _study_from_row(row[:m]), _counts(row[m:])


def answer_record(*, assignment_id: int, judgments: list[Judgment], completed_at: datetime, shown_at: datetime) -> None:
    """Insert the judgments of one answer and mark its assignment answered (it holds its slot from now on): one
    statement on PostgreSQL (a data-modifying WITH), two elsewhere. The judgments' ids are set on them."""
    if connection.vendor != "postgresql":
        judgments_insert(judgments=judgments)
        assignment_complete(assignment_id=assignment_id, completed_at=completed_at, shown_at=shown_at)
        return
    judgments_insert(
        judgments=judgments,
        prefix=(f"WITH answered AS ({ASSIGNMENT_COMPLETE}) ", [completed_at, shown_at, assignment_id]),
    )


# Every column of a judgment but its id, read from the model: the general path's insert and the one-statement
# answer's (answer_and_next) write the same columns.
JUDGMENT_FIELDS = tuple(field for field in Judgment._meta.concrete_fields if not field.primary_key)
JUDGMENT_COLUMNS = tuple(field.column for field in JUDGMENT_FIELDS)


def judgments_insert(*, judgments: list[Judgment], prefix: tuple[str, list] = ("", [])) -> None:
    """Insert the judgments of one answer in one statement; their ids are set on them."""
    row = "(" + ", ".join(["%s"] * len(JUDGMENT_FIELDS)) + ")"
    params = [
        field.get_db_prep_save(getattr(judgment, field.attname), connection)
        for judgment in judgments
        for field in JUDGMENT_FIELDS
    ]
    sql = (
        f"{prefix[0]}INSERT INTO {JUDGMENT} ({', '.join(JUDGMENT_COLUMNS)}) VALUES {', '.join([row] * len(judgments))}"
        " RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*prefix[1], *params])
        ids = [row[0] for row in cursor.fetchall()]
    for judgment, pk in zip(judgments, ids, strict=True):
        judgment.pk = pk
        judgment._state.adding = False
        judgment._state.db = connection.alias


def rater_answered(*, rater_id: int, at: datetime, counted: bool) -> None:
    """Record on the rater's row when they last answered (the moment their next item showed) and, when `counted`
    (practice aside), one more answer."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {RATER} SET n_answered = n_answered + %s, last_answered_at = %s WHERE id = %s",
            [int(counted), at, rater_id],
        )


# Answered: it holds its slot from now on (a reclaimed item answered while its comparison had room, or a first item,
# takes one), and keeps when it was shown.
ASSIGNMENT_COMPLETE = (
    f"UPDATE {ASSIGNMENT} SET completed_at = %s, shown_at = %s, released_at = NULL, holds_slot = TRUE WHERE id = %s"
)


def assignment_complete(*, assignment_id: int, completed_at: datetime, shown_at: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(ASSIGNMENT_COMPLETE, [completed_at, shown_at, assignment_id])


def samples_of(*, study: Study, prompt_id: int, model_ids: list[int]) -> list[tuple[int, int, str]]:
    """(id, evaluated model id, display name in the study) of the samples of a prompt by these models that the study
    shows (those with a display image), in index order."""
    placeholders = ", ".join(["%s"] * len(model_ids))
    sql = (
        f"SELECT s.id, s.evaluated_model_id FROM {SAMPLE} s WHERE s.prompt_id = %s"
        f' AND s.evaluated_model_id IN ({placeholders}) ORDER BY s."index"'
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [prompt_id, *model_ids])
        rows = cursor.fetchall()
    names = study_display_names(study)
    return [(sample_id, model_id, names[sample_id]) for sample_id, model_id in rows if sample_id in names]


# Study (id, rater token) → {sample id: display name}: a study's samples get their display names once, when it first
# opens, and keep them (study_display_prepare), so each process reads them once per study instead of probing the
# display images on every claim and answer (16 index probes per item: a fifth of an answer's PostgreSQL time). The
# rater token is in the key because ids can come back (SQLite, after a rollback). A few studies per process.
_DISPLAY_NAMES: dict[tuple[int, str], dict[int, str]] = {}
DISPLAY_NAMES_STUDIES = 8


def study_display_names(study: Study, sample_ids=()) -> dict[int, str]:
    """{sample id: display name} of the study's samples (read again when one of `sample_ids` is not there yet)."""
    key = (study.pk, study.rater_token)
    names = _DISPLAY_NAMES.get(key)
    if names is None or any(sample_id not in names for sample_id in sample_ids):
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT sample_id, name FROM {DISPLAY_IMAGE} WHERE study_id = %s AND sample_id IS NOT NULL", [study.pk]
            )
            names = dict(cursor.fetchall())
        if len(_DISPLAY_NAMES) >= DISPLAY_NAMES_STUDIES:
            _DISPLAY_NAMES.pop(next(iter(_DISPLAY_NAMES)))
        _DISPLAY_NAMES[key] = names
    return names


# What serving writes of a new assignment, read from the model: every column but those an answer or a release sets.
ASSIGNMENT_INSERT_FIELDS = tuple(
    field
    for field in Assignment._meta.concrete_fields
    if not field.primary_key and field.attname not in ("shown_at", "released_at", "completed_at")
)
ASSIGNMENT_INSERT_COLUMNS = tuple(field.column for field in ASSIGNMENT_INSERT_FIELDS)


@functools.cache
def _assignments_insert_json_sql(vendor: str) -> str:
    """assignments_insert's statement on PostgreSQL: the record's column types read from the model's fields (once:
    asking the fields costs more than the rest of building a batch's parameters)."""
    columns = ASSIGNMENT_INSERT_COLUMNS
    record = ", ".join(f"{column} {Assignment._meta.get_field(column).db_type(connection)}" for column in columns)
    return (
        f"INSERT INTO {ASSIGNMENT} ({', '.join(columns)}) SELECT {', '.join(columns)}"
        f" FROM jsonb_to_recordset(%s::jsonb) AS x({record}) RETURNING id, key"
    )


def assignments_insert(*, assignments: list[Assignment]) -> None:
    """Insert new assignments (comparisons and controls) in one statement, in list order (the order a rater is
    served them); their ids are set on them."""
    columns = ASSIGNMENT_INSERT_COLUMNS
    if connection.vendor == "postgresql":
        # The batch as one JSON document, read back as rows: the statement's text is the same whatever the batch's
        # size, so it is prepared once per connection, and the values cost one json.dumps (a VALUES list has a text,
        # and 13 parameters, per row; arrays per column cost psycopg more to write than the rest of the claim).
        sql = _assignments_insert_json_sql(connection.vendor)
        params = [json.dumps([{column: _plain(getattr(a, column)) for column in columns} for a in assignments])]
    else:
        row = "(" + ", ".join(["%s"] * len(columns)) + ")"
        sql = (
            f"INSERT INTO {ASSIGNMENT} ({', '.join(columns)}) VALUES {', '.join([row] * len(assignments))}"
            " RETURNING id, key"
        )
        params = [
            field.get_db_prep_save(getattr(a, field.attname), connection)
            for a in assignments
            for field in ASSIGNMENT_INSERT_FIELDS
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = dict((key, pk) for pk, key in cursor.fetchall())
    for assignment in assignments:
        assignment.pk = ids[assignment.key]
        assignment._state.adding = False
        assignment._state.db = connection.alias


# How many of the least-rated free comparisons a claim picks from at random (at least this many, and at least
# CLAIM_WINDOW_PER_ITEM times the number claimed): more than the claims in flight at once (one per web worker), so
# that they rarely meet on a row, and so raters see comparisons in different orders; few, because each candidate
# costs an index probe (64 cost twice what 16 do: 1.5 against 0.8 ms of PostgreSQL time).
CLAIM_WINDOW = 16
CLAIM_WINDOW_PER_ITEM = 3


def comparisons_claim(
    *, rater_id: int, study: Study, wait: bool, limit: int = 1
) -> list[tuple[Comparison, list[tuple[int, int, str]]]]:
    """Take one slot of each of up to `limit` comparisons the rater should see next, atomically: each comparison
    (its prompt's text and position loaded) with its samples (as samples_of); empty if no slot is free. On
    PostgreSQL the samples come in the same statement.

    One statement: among the free comparisons the rater has not seen with the fewest raters (a window of
    CLAIM_WINDOW or more, read in index order), pick `limit` at random, lock them and count the rater in. SKIP
    LOCKED lets concurrent raters take other rows instead of queueing behind these; `wait` locks without skipping,
    in id order (after a miss: the rows skipped may still have had room). The lock re-checks n_assigned <
    ratings_per_comparison on each row's latest version, so a slot is never taken twice.

    "Not seen" is an index probe per candidate (the unique index on rater and comparison) rather than a join, whose
    plan would depend on how many assignments the planner believes a rater has; the window bounds the probes.
    """
    # Waiting, rows are locked in id order, the order the sweep uses too: a row that fails the re-check stays locked
    # to the end of the transaction, so two claims locking in different orders could deadlock.
    window_order, order, lock = "x.n_assigned", "candidate.n_assigned, RANDOM()", ""
    if connection.features.has_select_for_update:
        lock = f"{_lock_mode()} OF c" if wait else f"{_lock_mode()} OF c SKIP LOCKED"
        if wait:
            window_order, order = "x.id", "c.id"
    window = max(CLAIM_WINDOW, CLAIM_WINDOW_PER_ITEM * limit)
    claim = (
        f"UPDATE {COMPARISON} SET n_assigned = n_assigned + 1 WHERE id IN ("
        f"SELECT c.id FROM (SELECT x.id, x.n_assigned FROM {COMPARISON} x WHERE x.study_id = %s"
        f" AND x.n_assigned < %s AND (SELECT 1 FROM {ASSIGNMENT} a WHERE a.rater_id = %s AND a.comparison_id = x.id)"
        f" IS NULL ORDER BY {window_order} LIMIT %s) candidate"
        f" JOIN {COMPARISON} c ON c.id = candidate.id WHERE c.n_assigned < %s"
        f" ORDER BY {order} LIMIT %s {lock})"
        f" RETURNING id, prompt_id, model_a_id, model_b_id,"
        f" (SELECT p.text FROM {PROMPT} p WHERE p.id = prompt_id),"
        f" (SELECT p.position FROM {PROMPT} p WHERE p.id = prompt_id)"
    )
    params = [study.pk, study.ratings_per_comparison, rater_id, window, study.ratings_per_comparison, limit]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH claimed AS ({claim}) SELECT claimed.*, s.id, s.evaluated_model_id FROM claimed"
                f" LEFT JOIN {SAMPLE} s ON s.prompt_id = claimed.prompt_id"
                " AND s.evaluated_model_id IN (claimed.model_a_id, claimed.model_b_id)"
                ' ORDER BY claimed.id, s."index"',
                params,
            )
            rows = cursor.fetchall()
            names = study_display_names(study)
            claimed: dict[int, tuple[tuple, list]] = {}
            for row in rows:
                _, samples = claimed.setdefault(row[0], (row[:6], []))
                # A sample with no display image (added after the study opened) is not shown.
                name = names.get(row[6])
                if name is not None:
                    samples.append((row[6], row[7], name))
        else:
            cursor.execute(claim, params)
            claimed = {row[0]: (row[:6], None) for row in cursor.fetchall()}
    return [_comparison_with_samples(study, head, samples) for head, samples in claimed.values()]


def _comparison_with_samples(
    study: Study, head: tuple, samples: list | None
) -> tuple[Comparison, list[tuple[int, int, str]]]:
    """A comparison from (id, prompt id, model A id, model B id, prompt text, prompt position), its prompt loaded,
    with its samples (read here when not given)."""
    comparison_id, prompt_id, model_a_id, model_b_id, text, position = head
    if samples is None:
        samples = samples_of(study=study, prompt_id=prompt_id, model_ids=[model_a_id, model_b_id])
    comparison = Comparison.from_db(
        connection.alias,
        ["id", "study_id", "prompt_id", "model_a_id", "model_b_id"],
        [comparison_id, study.pk, prompt_id, model_a_id, model_b_id],
    )
    comparison.study = study
    # from_db takes the values in the order of the model's fields.
    comparison.prompt = Prompt.from_db(
        connection.alias, ["id", "prompt_set_id", "position", "text"], [prompt_id, study.prompt_set_id, position, text]
    )
    return comparison, samples


def comparison_pick(*, rater_id: int, study: Study) -> tuple[Comparison, list[tuple[int, int, str]]] | None:
    """A comparison the rater has not seen that has a free slot, at random among the least-rated (the claim's
    window), with its samples, without taking the slot or locking anything: a rater's first item. None: none left."""
    sql = (
        f"SELECT x.id, x.prompt_id, x.model_a_id, x.model_b_id, p.text, p.position FROM {COMPARISON} x"
        f" JOIN {PROMPT} p ON p.id = x.prompt_id WHERE x.study_id = %s AND x.n_assigned < %s"
        f" AND (SELECT 1 FROM {ASSIGNMENT} a WHERE a.rater_id = %s AND a.comparison_id = x.id) IS NULL"
        " ORDER BY x.n_assigned LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [study.pk, study.ratings_per_comparison, rater_id, CLAIM_WINDOW])
        rows = cursor.fetchall()
    if not rows:
        return None
    return _comparison_with_samples(study, secrets.choice(rows), None)


@dataclass
class FastAnswer:
    """What answer_and_next did: the answered assignment, its judgments' ids by question, the rater's items answered
    with this one (practice aside), the study's gold trials (None: not read), the next item (None: the
    rater's next pending item is not a comparison, or they have none), and how many items the rater has pending
    after this answer, the next one included (counted up to 2: 1 says the next item is their last)."""

    assignment: Assignment
    left_is_a: bool
    judgment_ids: dict[str, int]
    done: int
    gold_trials: int | None
    next_assignment: Assignment | None
    pending_after: int = 0


# What the answer path reads of the answered assignment and of the next one (in the order of the model's fields):
# no more, since converting a column costs (a timestamp is parsed, a JSON list decoded).
ANSWERED_FIELDS = ("id", "kind", "comparison_id", "key", "left_model_id", "left_sample_ids", "right_sample_ids")
SHOWN_FIELDS = ("id", "kind", "comparison_id", "key", "left_sample_ids", "right_sample_ids")


def answer_and_next(
    *,
    rater_id: int,
    study: Study,
    key: str,
    choices: list[tuple[str, str, str]],
    response_time_ms: int,
    now: datetime,
    lease,
    study_version: str | None = None,
) -> FastAnswer | None:
    """The answer path's common case in one statement (PostgreSQL): record the answer to a served comparison and
    show the rater's next pending item. None when the statement did nothing because the case is not the common one
    (the key is unknown or not this rater's, the item was answered or reclaimed, is a control item, or the study is
    not open): the caller then takes the general path, which has every rule.

    `choices`: (question, choice in model space if the left set is model A's, choice if it is model B's), in the
    order of the study's questions; the row says which applies. Marking the assignment answered is the row lock:
    a second submission of the same key waits for the first, then finds it answered and does nothing. With
    `study_version` (see rater_by_access_token), it also does nothing if the study changed since `study` was read.
    The next
    item is the rater's oldest pending one, read with its caption and image names; a comparison whose lease ends
    before `lease.renew_before` gets a new one (`lease.until`: serving.Lease, the one lease rule), and is not returned
    if it was reclaimed meanwhile.
    """
    if connection.vendor != "postgresql":
        return None
    answered = ", ".join(f"a.{name}" for name in ANSWERED_FIELDS)
    shown = ", ".join(f"p.{name}" for name in SHOWN_FIELDS)
    questions = ", ".join(["(%s, %s, %s)"] * len(choices))
    gold = COUNT_GOLD_TRIALS.replace("r.study_id", "%s") if study.gold_rate > 0 else SKIPPED
    # The judgment's columns as the model has them, each with what it is made of here (the answered row `x`, the
    # question row `q`, or a parameter): a column the model gains and this statement does not fill fails here.
    made_of = {
        "assignment_id": ("x.id", []),
        "comparison_id": ("x.comparison_id", []),
        "rater_id": ("%s", [rater_id]),
        "question": ("q.question", []),
        "choice": ("CASE WHEN x.left_is_a THEN q.a ELSE q.b END", []),
        "left_model_id": ("x.left_model_id", []),
        "left_sample_ids": ("x.left_sample_ids", []),
        "right_sample_ids": ("x.right_sample_ids", []),
        "response_time_ms": ("%s", [response_time_ms]),
        "created_at": ("%s", [now]),
    }
    if set(made_of) != set(JUDGMENT_COLUMNS):
        raise ImproperlyConfigured(f"answer_and_next writes {sorted(made_of)}; a judgment has {JUDGMENT_COLUMNS}.")
    judgment_values = ", ".join(made_of[column][0] for column in JUDGMENT_COLUMNS)
    judgment_params = [param for column in JUDGMENT_COLUMNS for param in made_of[column][1]]
    # The rater's row is locked first (the order every path takes: `locked` is read before any assignment row is
    # touched), then their answer count and last answer time are set on it. The item was shown by the response to
    # the rater's previous answer, or when it was served if that came later: the server's clock, not the client's.
    sql = (
        f"WITH locked AS (SELECT r.id, r.last_answered_at FROM {RATER} r WHERE r.id = %s {_lock_mode()}),"
        f" answered AS (UPDATE {ASSIGNMENT} a SET completed_at = %s,"
        " shown_at = GREATEST(a.served_at, (SELECT last_answered_at FROM locked))"
        f" FROM {COMPARISON} c, {STUDY} s"
        f" WHERE a.key = %s AND a.rater_id = (SELECT id FROM locked) AND a.kind = {KIND_COMPARISON}"
        " AND a.completed_at IS NULL AND a.released_at IS NULL AND a.holds_slot AND c.id = a.comparison_id"
        f" AND s.id = %s AND s.status = {STUDY_OPEN}"
        f"{' AND s.xmin::text = %s' if study_version is not None else ''}"
        f" RETURNING {answered}, a.left_model_id = c.model_a_id AS left_is_a),"
        f" judged AS (INSERT INTO {JUDGMENT} ({', '.join(JUDGMENT_COLUMNS)}) SELECT {judgment_values}"
        f" FROM answered x CROSS JOIN (VALUES {questions}) AS q (question, a, b) RETURNING id, question),"
        f" pending AS (SELECT {shown}, p.expires_at < %s AS stale FROM {ASSIGNMENT} p WHERE p.rater_id = %s"
        " AND p.completed_at IS NULL AND p.released_at IS NULL AND p.key <> %s ORDER BY p.served_at, p.id LIMIT 1),"
        f" renewed AS (UPDATE {ASSIGNMENT} n SET expires_at = %s FROM pending WHERE n.id = pending.id"
        f" AND pending.stale AND n.kind = {KIND_COMPARISON} AND n.completed_at IS NULL AND n.released_at IS NULL"
        " AND EXISTS (SELECT 1 FROM answered) RETURNING n.id),"
        f" counted AS (UPDATE {RATER} r SET n_answered = r.n_answered + 1, last_answered_at = %s"
        " WHERE r.id = (SELECT id FROM locked) AND EXISTS (SELECT 1 FROM answered) RETURNING r.n_answered)"
        " SELECT x.*, (SELECT json_object_agg(j.question, j.id) FROM judged j), (SELECT n_answered FROM counted),"
        f" {gold}, {_pending_count(up_to=2, other_than_key=True)},"
        f" n.{', n.'.join(SHOWN_FIELDS)}, n.stale AND NOT EXISTS (SELECT 1 FROM renewed), p.id, p.position,"
        f" p.text FROM answered x LEFT JOIN pending n ON n.kind = {KIND_COMPARISON} LEFT JOIN {COMPARISON} nc"
        f" ON nc.id = n.comparison_id LEFT JOIN {PROMPT} p ON p.id = nc.prompt_id"
    )
    params: list = [rater_id, now, key, study.pk, *([study_version] if study_version is not None else [])]
    params += judgment_params
    for choice in choices:
        params += choice
    params += [lease.renew_before, rater_id, key, lease.until, now]
    if study.gold_rate > 0:
        params.append(study.pk)
    params += [rater_id, key]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    n, m = len(ANSWERED_FIELDS), len(SHOWN_FIELDS)
    assignment = _instance(Assignment, row[:n], ANSWERED_FIELDS)
    left_is_a, judgment_ids, done, gold_trials, pending_after = row[n : n + 5]
    shown_row = row[n + 5 : n + 5 + m]
    reclaimed, prompt_id, position, text = row[n + 5 + m :]
    next_assignment = None
    if shown_row[0] is not None and not reclaimed:
        next_assignment = _instance(Assignment, shown_row, SHOWN_FIELDS)
        comparison = Comparison.from_db(
            connection.alias, ["id", "study_id", "prompt_id"], [next_assignment.comparison_id, study.pk, prompt_id]
        )
        comparison.prompt = Prompt.from_db(
            connection.alias,
            ["id", "prompt_set_id", "position", "text"],
            [prompt_id, study.prompt_set_id, position, text],
        )
        next_assignment.comparison = comparison
        shown = [*next_assignment.left_sample_ids, *next_assignment.right_sample_ids]
        names = study_display_names(study, shown)
        next_assignment.image_names = {sample_id: names[sample_id] for sample_id in shown}
    return FastAnswer(
        assignment=assignment,
        left_is_a=left_is_a,
        judgment_ids={question: int(pk) for question, pk in _json(judgment_ids).items()},
        done=done,
        gold_trials=gold_trials,
        next_assignment=next_assignment,
        pending_after=pending_after,
    )


def _json(value):
    """A json value as psycopg gives it (parsed already, or text when it could not tell the type)."""
    return json.loads(value) if isinstance(value, str) else value
