"""Reads for results and exports: a study's judgments as a DataFrame, and the results computed from it.

``judgments_frame`` is the one read path: the results page, the chart, the API exports and the management
command all start from it, so what is exported is exactly what the numbers were computed from.
"""

import json
from typing import Any

import pandas as pd
from django.db import connection
from django.db.models import BigIntegerField, CharField, Exists, F, Func, OuterRef, Value
from django.db.models.functions import Concat

from drawbench.results import stats
from drawbench.results.models import JudgeScore
from drawbench.studies.models import Assignment, Judgment, JudgmentExclusion, Question, RaterFlag, Study
from drawbench.studies.selectors import study_samples

# Export columns, in order, with their pandas dtypes (the CSV loads back into the same ones).
JUDGMENT_COLUMNS: dict[str, str] = {
    "study_id": "int64",
    "judgment_id": "int64",
    "prompt_id": "int64",
    "prompt_position": "int64",
    "prompt": "str",
    "category": "str",
    "model_a": "str",
    "model_b": "str",
    "model_left": "str",
    "question": "str",
    "choice": "str",
    "rater_id": "str",
    "response_time_ms": "int64",
    "created_at": "datetime64[us, UTC]",
    "excluded": "bool",
    "rater_flagged": "bool",
    "assignment_id": "int64",
    "left_sample_ids": "str",
    "right_sample_ids": "str",
    "served_at": "datetime64[us, UTC]",
    "shown_at": "datetime64[us, UTC]",
    "is_gold": "bool",
    "is_practice": "bool",
}
# What each column means, for the bundle's data dictionary (one line each).
JUDGMENT_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "study_id": "The study.",
    "judgment_id": "The judgment (immutable; exclusions are flags).",
    "prompt_id": "The prompt (the comparison is this prompt with model_a and model_b).",
    "prompt_position": "1-based position of the prompt in its prompt set's original order.",
    "prompt": "The prompt's text, as shown to the rater.",
    "category": "The prompt's category (a stratum of every interval).",
    "model_a": "Model A of the comparison, name@version.",
    "model_b": "Model B of the comparison, name@version.",
    "model_left": "The model whose set was shown on the left.",
    "question": "The question answered (fidelity, alignment).",
    "choice": "The answer in model space: A prefers model_a, B prefers model_b, tie is indifferent.",
    "rater_id": "Pseudonymous rater id (a random public token; never the crowd platform's id).",
    "response_time_ms": "Response time measured in the rater's browser, milliseconds.",
    "created_at": "Server time the answer was recorded (answered), UTC.",
    "excluded": "Flagged by a JudgmentExclusion (left out of results unless included).",
    "rater_flagged": "The rater is flagged by quality control.",
    "assignment_id": "The item served to the rater (one per rater and comparison; both questions share it).",
    "left_sample_ids": "JSON list of the sample ids of the left set, in displayed order (the image order).",
    "right_sample_ids": "JSON list of the sample ids of the right set, in displayed order (the image order).",
    "served_at": "Server time the item was claimed for the rater, UTC.",
    "shown_at": "Server time the item was first shown to the rater, UTC; empty where not recorded.",
    "is_gold": "A silent gold trial (control item). Always false here: control answers never become judgments.",
    "is_practice": "A labelled practice item. Always false here: control answers never become judgments.",
}


def _model_label(relation: str) -> Concat:
    """``name@version``, as EvaluatedModel.__str__ writes it."""
    return Concat(F(f"{relation}__name"), Value("@"), F(f"{relation}__version"), output_field=CharField())


class _EpochMicroseconds(Func):
    """A PostgreSQL timestamp as integer microseconds since the epoch, exactly (whole seconds and microseconds apart,
    so no double rounding). A bigint loads in C; a timestamptz goes through a per-value Python loader that takes
    most of the time of reading a million judgments."""

    output_field = BigIntegerField()
    template = (
        "(CAST(EXTRACT(EPOCH FROM date_trunc('second', %(expressions)s)) AS BIGINT) * 1000000"
        " + MOD(CAST(EXTRACT(MICROSECONDS FROM %(expressions)s) AS BIGINT), 1000000))"
    )


def judgments_frame(
    *, study: Study, include_excluded: bool = False, exclude_flagged_raters: bool = False
) -> pd.DataFrame:
    """One row per judgment of ``study`` (columns ``JUDGMENT_COLUMNS``), in the order they were made; one query.

    Choices are in model space: "A" prefers ``model_a``. ``model_left`` is the model that was shown on the left.
    Judgments flagged by a JudgmentExclusion are left out unless ``include_excluded``; ``excluded`` says which.
    ``rater_flagged`` marks judgments of raters flagged by quality control (a RaterFlag); they are kept unless
    ``exclude_flagged_raters``.
    """
    queryset = (
        Judgment.objects.filter(comparison__study=study)
        .annotate(
            export_model_a=_model_label("comparison__model_a"),
            export_model_b=_model_label("comparison__model_b"),
            export_model_left=_model_label("left_model"),
            export_excluded=Exists(JudgmentExclusion.objects.filter(judgment=OuterRef("pk"))),
            export_rater_flagged=Exists(RaterFlag.objects.filter(rater=OuterRef("rater"))),
        )
        .order_by("created_at", "id")
    )
    if not include_excluded:
        queryset = queryset.filter(export_excluded=False)
    if exclude_flagged_raters:
        queryset = queryset.filter(export_rater_flagged=False)
    fast_timestamps = connection.vendor == "postgresql"
    if fast_timestamps:
        queryset = queryset.annotate(
            export_created_us=_EpochMicroseconds("created_at"),
            export_served_us=_EpochMicroseconds("assignment__served_at"),
            export_shown_us=_EpochMicroseconds("assignment__shown_at"),
        )
    records = queryset.values_list(
        "id",
        "comparison__prompt_id",
        "comparison__prompt__position",
        "comparison__prompt__text",
        "comparison__prompt__category",
        "export_model_a",
        "export_model_b",
        "export_model_left",
        "question",
        "choice",
        "rater__public_id",
        "response_time_ms",
        "export_created_us" if fast_timestamps else "created_at",
        "export_excluded",
        "export_rater_flagged",
        "assignment_id",
        "left_sample_ids",
        "right_sample_ids",
        "export_served_us" if fast_timestamps else "assignment__served_at",
        "export_shown_us" if fast_timestamps else "assignment__shown_at",
        "assignment__kind",
    )
    columns = [column for column in JUDGMENT_COLUMNS if column not in ("study_id", "is_gold", "is_practice")]
    frame = pd.DataFrame.from_records(list(records), columns=[*columns, "kind"])
    frame.insert(0, "study_id", study.pk)
    for column in ("created_at", "served_at", "shown_at"):
        if fast_timestamps:
            frame[column] = pd.to_datetime(frame[column].astype("Int64"), unit="us", utc=True)
        else:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("left_sample_ids", "right_sample_ids"):
        frame[column] = [json.dumps(ids, separators=(",", ":")) for ids in frame[column]]
    frame["is_gold"] = (frame["kind"] == Assignment.Kind.GOLD).to_numpy(dtype=bool)
    frame["is_practice"] = (frame["kind"] == Assignment.Kind.PRACTICE).to_numpy(dtype=bool)
    return frame.drop(columns="kind").astype(JUDGMENT_COLUMNS)


def study_results(
    *,
    study: Study,
    include_excluded: bool = False,
    exclude_flagged_raters: bool = False,
    method: str = stats.DEFAULT_INTERVAL_METHOD,
    level: float = stats.DEFAULT_LEVEL,
    B: int = stats.DEFAULT_B,
    seed: int = stats.DEFAULT_SEED,
    with_ranking: bool = True,
    with_raters: bool = True,
    compare_flagged: bool = False,
    judge_inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results of ``study`` from its judgments (one query); see ``results_from_frame``."""
    return results_from_frame(
        judgments_frame(study=study, include_excluded=True),
        study_id=study.pk,
        study_name=study.name,
        questions=list(study.questions),
        include_excluded=include_excluded,
        exclude_flagged_raters=exclude_flagged_raters,
        method=method,
        level=level,
        B=B,
        seed=seed,
        with_ranking=with_ranking,
        with_raters=with_raters,
        compare_flagged=compare_flagged,
        judge_inputs=judge_inputs,
    )


def _used_judgments(frame: pd.DataFrame, *, include_excluded: bool, exclude_flagged_raters: bool) -> pd.DataFrame:
    used = frame if include_excluded else frame[~frame["excluded"]]
    if exclude_flagged_raters and "rater_flagged" in used:
        used = used[~used["rater_flagged"]]
    return used


def _nest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by question, then pair of models: {question, label, pairs: [{model_a, model_b, overall,
    categories}]}; the row dicts themselves, not copies."""
    nested: list[dict[str, Any]] = []
    for row in rows:
        if not nested or nested[-1]["question"] != row["question"]:
            nested.append({"question": row["question"], "label": _question_label(row["question"]), "pairs": []})
        pairs = nested[-1]["pairs"]
        if row["scope"] == stats.SCOPE_OVERALL:
            pairs.append({"model_a": row["model_a"], "model_b": row["model_b"], "overall": row, "categories": []})
        else:
            pairs[-1]["categories"].append(row)
    return nested


def _pairwise_with_fits(nested: list[dict[str, Any]], ranking: list[dict[str, Any]]) -> None:
    """Put each pair's fitted s (Bradley–Terry, Davidson) beside its observed s, in each ranking entry."""
    for table in ranking:
        question = next((q for q in nested if q["question"] == table["question"]), None)
        table["pairwise"] = [
            {
                "model_a": pair["model_a"],
                "model_b": pair["model_b"],
                "observed": pair["overall"],
                **{
                    f"s_{pair_model}": stats.fitted_score(table, pair_model, pair["model_a"], pair["model_b"])
                    for pair_model in stats.PAIR_MODELS
                },
            }
            for pair in (question["pairs"] if question else [])
        ]


def results_from_frame(
    frame: pd.DataFrame,
    *,
    study_id: int,
    study_name: str,
    questions: list[str],
    include_excluded: bool = False,
    exclude_flagged_raters: bool = False,
    method: str = stats.DEFAULT_INTERVAL_METHOD,
    level: float = stats.DEFAULT_LEVEL,
    B: int = stats.DEFAULT_B,
    seed: int = stats.DEFAULT_SEED,
    with_ranking: bool = True,
    with_raters: bool = True,
    compare_flagged: bool = False,
    judge_inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Results per question and pair of models, overall and per category, from a frame with ``excluded``.

    ``rows`` is flat (one row per question × pair × scope, as exported); ``questions`` nests the same row dicts
    for the page and the chart. Flagged judgments are counted in ``n_flagged`` and used only when
    ``include_excluded``. Judgments of raters flagged by quality control (column ``rater_flagged``, when the frame
    has it) are counted in ``n_flagged_rater_judgments`` and left out only when ``exclude_flagged_raters``.

    Every interval is computed by ``method`` (B resamples and ``seed`` for the bootstraps). Extras: ``ranking``
    (Bradley–Terry and Davidson per question when there are three models or more, with the pairwise table beside
    them), ``raters`` (per-rater diagnostics, flagged raters included and marked), ``position_bias`` (over the
    whole study), and with ``compare_flagged`` the overall rows of both versions, with and without flagged raters,
    side by side (``flagged_comparison``; empty when no rater is flagged).
    """
    stats.method_check(method)
    used = _used_judgments(frame, include_excluded=include_excluded, exclude_flagged_raters=exclude_flagged_raters)
    options = {"questions": questions, "method": method, "level": level, "B": B, "seed": seed}
    table = stats.preference_table(used, **options)
    rows = [{"study_id": study_id, **row, "exclude_flagged_raters": exclude_flagged_raters} for row in table]
    nested = _nest(rows)

    rater_flagged = frame["rater_flagged"] if "rater_flagged" in frame else pd.Series(False, index=frame.index)
    not_excluded = frame if include_excluded else frame[~frame["excluded"]]
    n_flagged_raters = int(not_excluded.loc[rater_flagged.loc[not_excluded.index], "rater_id"].nunique())

    ranking: list[dict[str, Any]] = []
    if with_ranking:
        ranking = stats.ranking_tables(stats.pairs_orient(used), questions=questions, level=level, B=B, seed=seed)
        _pairwise_with_fits(nested, ranking)

    flagged_comparison: list[dict[str, Any]] = []
    if compare_flagged and n_flagged_raters:
        other = _used_judgments(
            frame, include_excluded=include_excluded, exclude_flagged_raters=not exclude_flagged_raters
        )
        other_rows = {
            (row["question"], row["model_a"], row["model_b"]): row
            for row in stats.preference_table(other, **options)
            if row["scope"] == stats.SCOPE_OVERALL
        }
        for row in rows:
            if row["scope"] != stats.SCOPE_OVERALL:
                continue
            counterpart = other_rows.get((row["question"], row["model_a"], row["model_b"]))
            with_flagged, without_flagged = (counterpart, row) if exclude_flagged_raters else (row, counterpart)
            flagged_comparison.append(
                {
                    "question": row["question"],
                    "label": _question_label(row["question"]),
                    "model_a": row["model_a"],
                    "model_b": row["model_b"],
                    "with_flagged": with_flagged,
                    "without_flagged": without_flagged,
                }
            )

    uses_resamples = stats.method_uses_resamples(method)
    results = {
        "study_id": study_id,
        "study_name": study_name,
        "include_excluded": include_excluded,
        "n_judgments": len(used),
        "n_flagged": int(frame["excluded"].sum()),
        "exclude_flagged_raters": exclude_flagged_raters,
        "n_flagged_rater_judgments": int(rater_flagged.sum()),
        "n_flagged_raters": n_flagged_raters,
        "method": method,
        "method_label": stats.INTERVAL_METHODS[method],
        "level": level,
        "B": B if uses_resamples else None,
        "seed": seed if uses_resamples else None,
        "ranking_B": B,
        "ranking_seed": seed,
        "target": stats.TARGET_POPULATION,
        "tie_convention": stats.TIE_CONVENTION,
        "tie_convention_label": stats.TIE_CONVENTION_LABEL,
        "low_precision_half_width": stats.LOW_PRECISION_HALF_WIDTH,
        "low_precision_min_df": stats.LOW_PRECISION_MIN_DF,
        "rows": rows,
        "questions": nested,
        "ranking": ranking,
        "raters": stats.rater_table(not_excluded, level=level) if with_raters and "model_left" in frame else [],
        "position_bias": stats.study_position_bias(used, level=level),
        "flagged_comparison": flagged_comparison,
    }
    results["methods"] = stats.methods_text(results)
    # Automatic judges, by PPI++ beside (never instead of) the human-only rows: see stats.ppi_tables.
    results["ppi"] = stats.ppi_tables(used, judge_inputs, questions=questions, level=level) if judge_inputs else []
    return results


def study_ranking(
    *, study: Study, include_excluded: bool = False, exclude_flagged_raters: bool = False
) -> list[dict[str, Any]]:
    """Bradley–Terry and Davidson rankings of a study's models, one row per question × fit × model (empty with
    fewer than three models); one query."""
    used = _used_judgments(
        judgments_frame(study=study, include_excluded=True),
        include_excluded=include_excluded,
        exclude_flagged_raters=exclude_flagged_raters,
    )
    tables = stats.ranking_tables(stats.pairs_orient(used), questions=list(study.questions))
    return ranking_export_rows(tables, study_id=study.pk, exclude_flagged_raters=exclude_flagged_raters)


def ranking_export_rows(
    tables: list[dict[str, Any]], *, study_id: int, exclude_flagged_raters: bool = False
) -> list[dict[str, Any]]:
    """The ranking export's rows (StudyRankingApi's) from ``stats.ranking_tables``' tables."""
    return [
        {"study_id": study_id, **row, "exclude_flagged_raters": exclude_flagged_raters}
        for row in stats.ranking_rows(tables)
    ]


def study_rater_diagnostics(*, study: Study, include_excluded: bool = False) -> list[dict[str, Any]]:
    """Per-rater diagnostics of a study (every rater with judgments, flagged ones included and marked with their
    reasons): n, tie rate, left-side rate with its interval, median response time. Two queries."""
    frame = judgments_frame(study=study, include_excluded=include_excluded)
    reasons: dict[str, list[str]] = {}
    for public_id, reason in RaterFlag.objects.filter(rater__study=study).values_list("rater__public_id", "reason"):
        reasons.setdefault(public_id, []).append(reason)
    return [
        {"study_id": study.pk, **row, "flag_reasons": ";".join(sorted(reasons.get(row["rater_id"], [])))}
        for row in stats.rater_table(frame)
    ]


def _question_label(value: str) -> str:
    try:
        return Question(value).label
    except ValueError:
        return value


def study_judge_inputs(*, study: Study) -> dict[str, Any]:
    """What PPI needs beside the judgments: the stored judge scores of the study's samples and the study's sample
    sets (every complete set of ``samples_per_side`` samples per prompt and model, by sample index), as
    ``{"scores": {(judge, question): {sample_id: score}}, "sets": DataFrame}``. One query when no judge has scored
    the study's samples, three otherwise."""
    samples = study_samples(study=study)
    scores: dict[tuple[str, str], dict[int, float]] = {}
    for judge, question, sample, score in JudgeScore.objects.filter(sample__in=samples).values_list(
        "judge", "question", "sample_id", "score"
    ):
        scores.setdefault((judge, question), {})[sample] = score
    if not scores:
        return {"scores": {}, "sets": pd.DataFrame()}
    rows = samples.annotate(model_label=_model_label("evaluated_model")).values_list(
        "id", "prompt_id", "prompt__category", "model_label", "index"
    )
    frame = pd.DataFrame.from_records(list(rows), columns=["sample_id", "prompt_id", "category", "model", "index"])
    size = study.samples_per_side
    frame["set_index"] = frame["index"] // size
    sets = (
        frame.sort_values("index")
        .groupby(["prompt_id", "category", "model", "set_index"], sort=True)["sample_id"]
        .agg(tuple)
        .reset_index()
    )
    sets = sets[sets["sample_id"].map(len) == size].rename(columns={"sample_id": "sample_ids"})
    return {"scores": scores, "sets": sets.reset_index(drop=True)}
