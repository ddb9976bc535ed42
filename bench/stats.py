"""Benchmark: the full statistics report of issue 5 for 1,000,000 judgments held in a DataFrame.

The report: for each of 2 questions, overall and the 11 DrawBench categories, the shares and s with the default
interval (two-way cluster-robust, t) plus the bootstrap variants (prompt-cluster percentile and BCa, two-way
pigeonhole) with B = 2,000, Wilson and Goodman; the within-prompt permutation test; Krippendorff's α (nominal,
ordinal) and raw agreement; position bias; per-rater diagnostics.

Separately (``--postgres``), the same report read from PostgreSQL through the export path: the simulated judgments
become a throwaway study in a scratch database (created, migrated, filled by COPY, dropped at the end), which is read
back by ``judgments_from_export`` (the results export's ``judgments_frame``) and reported on again; both the read and
the report are timed. ``--study ID`` reads an existing study of the configured database the same way.

Beside it, a straightforward pandas implementation (a Python loop of resamples, each a merge and a groupby), timed on
a few resamples and scaled to the same B; the ratio is on the last line. Prints figures, never asserts on time.

    .venv/bin/python bench/stats.py [--judgments 1000000] [--B 2000] [--naive-resamples 3] [--repeat 1]
        [--postgres [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--keep-database]]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drawbench.results import agreement, intervals, simulate  # noqa: E402
from drawbench.results.intervals import core as interval_core  # noqa: E402

SCORE = dict(zip(interval_core.CHOICES, interval_core.SCORE_OF_CHOICE, strict=True))  # the one tie convention

QUESTIONS = ("fidelity", "alignment")
METHODS = (
    intervals.DEFAULT_METHOD,
    "prompt_bootstrap",
    "prompt_bootstrap_bca",
    "two_way_bootstrap",
    "wilson",
    "goodman",
)


SCRATCH_DATABASE = "drawbench_bench_stats"
COPY_CHUNK_ROWS = 200_000


def django_setup(database_url: str | None = None) -> None:
    """Configure Django (the base settings) on ``database_url``, or on the environment's DATABASE_URL."""
    if database_url is not None:
        os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drawbench.settings.base")
    import django

    django.setup()


def report_frame(export: pd.DataFrame) -> pd.DataFrame:
    """The export's judgments (``selectors.judgments_frame``) in the report's convention."""
    return pd.DataFrame(
        {
            "question": export["question"].to_numpy(),
            "prompt_id": export["prompt_id"].to_numpy(),
            "category": export["category"].to_numpy(),
            "rater_id": export["rater_id"].to_numpy(),
            "choice": export["choice"].to_numpy(),
            "left_is_a": (export["model_left"] == export["model_a"]).to_numpy(),
            "response_time_ms": export["response_time_ms"].to_numpy(),
        }
    )


def judgments_from_export(study_id: int) -> pd.DataFrame:
    """The study's judgments as a frame in the report's convention, read through the results export path.

    Columns: question, prompt_id, category, rater_id, choice (A / tie / B, model space), left_is_a,
    response_time_ms. Needs Django configured (``django_setup``).
    """
    from drawbench.results.selectors import judgments_frame
    from drawbench.studies.models import Study

    return report_frame(judgments_frame(study=Study.objects.get(pk=study_id)))


@contextmanager
def scratch_database(base_url: str, name: str = SCRATCH_DATABASE, keep: bool = False):
    """Create an empty PostgreSQL database ``name`` beside ``base_url``'s, yield its URL, drop it afterwards."""
    import psycopg

    parts = urlsplit(base_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"--postgres needs a PostgreSQL URL, got {base_url!r} (DATABASE_URL or --database-url).")
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from django.db import connections

        connections.close_all()
        if not keep:
            with psycopg.connect(maintenance, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _copy(model, frame: pd.DataFrame) -> None:
    """COPY ``frame`` (columns named after the model's columns) into the model's table, in CSV chunks.

    Every other column must accept NULL: a column added to the model without a value here fails loudly.
    """
    from django.db import connection

    columns = {field.column: field for field in model._meta.concrete_fields}
    unknown = set(frame.columns) - set(columns)
    missing = [column for column, field in columns.items() if column not in frame.columns and not field.null]
    if unknown or missing:
        raise SystemExit(
            f"bench/stats.py: table {model._meta.db_table}: unknown column(s) {sorted(unknown)}, "
            f"no value for NOT NULL column(s) {missing}: update study_build."
        )
    names = ", ".join(f'"{column}"' for column in frame.columns)
    with (
        connection.cursor() as cursor,
        cursor.copy(f'COPY "{model._meta.db_table}" ({names}) FROM STDIN WITH (FORMAT csv)') as copy,
    ):
        for start in range(0, len(frame), COPY_CHUNK_ROWS):
            buffer = io.StringIO()
            frame.iloc[start : start + COPY_CHUNK_ROWS].to_csv(buffer, header=False, index=False)
            copy.write(buffer.getvalue().encode("utf-8"))


def study_build(frame: pd.DataFrame) -> int:
    """A throwaway study holding the judgments of ``frame`` (the report's convention) in the configured database:
    migrations, then the catalog rows and comparisons by the ORM and the assignments and judgments by COPY. Returns
    the study's id. The database must be empty: ids of the copied rows are given, not drawn."""
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet
    from drawbench.studies.models import Assignment, Comparison, Judgment, Rater, Study

    call_command("migrate", verbosity=0)
    with transaction.atomic():
        prompt_set = PromptSet.objects.create(slug="bench-stats", title="bench/stats.py")
        prompt_ids = pd.factorize(frame["prompt_id"], sort=True)
        categories = frame.groupby("prompt_id")["category"].first().loc[prompt_ids[1]]
        prompts = Prompt.objects.bulk_create(
            Prompt(prompt_set=prompt_set, position=index + 1, text=f"bench prompt {index + 1}", category=category)
            for index, category in enumerate(categories)
        )
        model_a = EvaluatedModel.objects.create(name="bench-a", version="1")
        model_b = EvaluatedModel.objects.create(name="bench-b", version="1")
        study = Study.objects.create(
            name="bench/stats.py", prompt_set=prompt_set, questions=list(QUESTIONS), status=Study.Status.CLOSED
        )
        study.evaluated_models.set([model_a, model_b])
        comparisons = Comparison.objects.bulk_create(
            Comparison(study=study, prompt=prompt, model_a=model_a, model_b=model_b) for prompt in prompts
        )
        rater_codes, rater_values = pd.factorize(frame["rater_id"])
        raters = Rater.objects.bulk_create([Rater(study=study) for _ in range(len(rater_values))], batch_size=5000)

        comparison_ids = np.array([c.pk for c in comparisons])[prompt_ids[0]]
        rater_ids = np.array([r.pk for r in raters])[rater_codes]
        # One assignment per (prompt, rater): both questions were answered on the same display.
        keys = pd.DataFrame({"comparison": comparison_ids, "rater": rater_ids, "left_is_a": frame["left_is_a"]})
        assignment_codes, _ = pd.factorize(keys["comparison"].astype(np.int64) * (rater_ids.max() + 1) + keys["rater"])
        first = keys.groupby(assignment_codes, sort=True).first()
        now = timezone.now()
        left = np.where(first["left_is_a"], model_a.pk, model_b.pk)
        stamp = now.isoformat()
        _copy(
            Assignment,
            pd.DataFrame(
                {
                    "id": np.arange(1, len(first) + 1),
                    "rater_id": first["rater"].to_numpy(),
                    "kind": "comparison",
                    "comparison_id": first["comparison"].to_numpy(),
                    "key": [f"bench-{index}" for index in range(len(first))],
                    "left_model_id": left,
                    "left_sample_ids": "[]",
                    "right_sample_ids": "[]",
                    "left_images": "[]",
                    "right_images": "[]",
                    "served_at": stamp,
                    "completed_at": stamp,
                }
            ),
        )
        created = now + pd.to_timedelta(np.arange(len(frame)), unit="us")
        _copy(
            Judgment,
            pd.DataFrame(
                {
                    "id": np.arange(1, len(frame) + 1),
                    "assignment_id": assignment_codes + 1,
                    "comparison_id": comparison_ids,
                    "rater_id": rater_ids,
                    "question": frame["question"].to_numpy(),
                    "choice": frame["choice"].to_numpy(),
                    "left_model_id": np.where(frame["left_is_a"], model_a.pk, model_b.pk),
                    "left_sample_ids": "[]",
                    "right_sample_ids": "[]",
                    "response_time_ms": frame["response_time_ms"].to_numpy(),
                    "created_at": pd.DatetimeIndex(created).strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),
                }
            ),
        )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{Judgment._meta.db_table}", "{Assignment._meta.db_table}"')
    return study.pk


def synthetic_judgments(n_judgments: int, seed: int) -> pd.DataFrame:
    """A DrawBench-shaped study of ``n_judgments`` (2 questions): 200 prompts, a pool of raters drawn at random
    per prompt (each rater rates half the prompts), prompt and rater effects, ties, left bias."""
    per_prompt = max(1, n_judgments // (len(QUESTIONS) * 200))
    scenario = simulate.Scenario(
        name="bench",
        design="random",
        n_raters=2 * per_prompt,
        ratings_per_prompt=per_prompt,
        effect=0.3,
    )
    return simulate.simulate_judgments(scenario, seed=seed, questions=QUESTIONS)


def frame_question_codes(frame: pd.DataFrame) -> np.ndarray:
    """Index of each judgment's question in ``QUESTIONS``."""
    return pd.Categorical(frame["question"], categories=list(QUESTIONS)).codes


def full_report(frame: pd.DataFrame, *, B: int, seed: int) -> tuple[dict, dict[str, float]]:
    """Every figure of the report, and the seconds each part took."""
    timings: dict[str, float] = {}
    out: dict = {}

    def timed(name, function, *args, **kwargs):
        start = time.perf_counter()
        value = function(*args, **kwargs)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return value

    whole = timed("validate and factorise", interval_core.judgment_arrays, frame)
    rows = []
    for index, question in enumerate(QUESTIONS):
        arrays = timed("split by question", whole.subset, frame_question_codes(frame) == index, question=question)
        rows += timed("preference rows (6 methods)", intervals.preference_rows, arrays, METHODS, B=B, seed=seed)
        out[f"permutation {question}"] = timed("permutation test", intervals.permutation_test, arrays, B=B, seed=seed)
        out[f"agreement {question}"] = timed("agreement (alpha, raw)", agreement.agreement_summary, arrays)
        out[f"position bias {question}"] = timed("position bias", agreement.position_bias, arrays)
    out["preference"] = pd.DataFrame(rows)
    out["raters"] = timed("rater diagnostics", agreement.rater_diagnostics, whole)
    return out, timings


# --------------------------------------------------------------------------------------------- naive pandas


def _naive_shares(resample: pd.DataFrame) -> pd.DataFrame:
    """Shares and s per question × category and per question, by groupby."""
    scored = resample.assign(y=resample["choice"].map(SCORE))
    per_category = scored.groupby(["question", "category"])["y"].mean()
    overall = scored.groupby("question")["y"].mean()
    shares = scored.groupby(["question", "category"])["choice"].value_counts(normalize=True)
    return per_category, overall, shares


def naive_prompt_resample(frame: pd.DataFrame, prompts: pd.DataFrame, rng: np.random.Generator):
    sampled = prompts.groupby("category", group_keys=False).sample(frac=1.0, replace=True, random_state=rng)
    return _naive_shares(sampled[["prompt_id"]].merge(frame, on="prompt_id"))


def naive_two_way_resample(frame: pd.DataFrame, prompts: pd.DataFrame, raters: pd.DataFrame, rng):
    sampled_prompts = prompts.groupby("category", group_keys=False).sample(frac=1.0, replace=True, random_state=rng)
    sampled_raters = raters.sample(frac=1.0, replace=True, random_state=rng)
    merged = sampled_prompts[["prompt_id"]].merge(frame, on="prompt_id").merge(sampled_raters, on="rater_id")
    return _naive_shares(merged)


def naive_permutation_resample(frame: pd.DataFrame, prompts: pd.DataFrame, rng: np.random.Generator):
    flips = prompts.assign(flip=rng.random(len(prompts)) < 0.5)[["prompt_id", "flip"]]
    merged = frame.merge(flips, on="prompt_id")
    y = merged["choice"].map(SCORE)
    return merged.assign(y=np.where(merged["flip"], 1 - y, y)).groupby("question")["y"].mean()


def naive_jackknife_step(frame: pd.DataFrame, prompt_id) -> pd.Series:
    return _naive_shares(frame[frame["prompt_id"] != prompt_id])


def naive_timing(frame: pd.DataFrame, *, B: int, resamples: int, seed: int) -> tuple[float, dict[str, float]]:
    """Seconds the naive loops would take for the report's B resamples (timed on ``resamples``, scaled)."""
    rng = np.random.default_rng(seed)
    prompts = frame[["prompt_id", "category"]].drop_duplicates()
    raters = frame[["rater_id"]].drop_duplicates()
    n_prompts = len(prompts)
    loops = {
        # percentile and BCa share one set of B resamples; BCa adds a leave-one-prompt-out jackknife.
        "prompt bootstrap": (lambda: naive_prompt_resample(frame, prompts, rng), B),
        "BCa jackknife": (lambda: naive_jackknife_step(frame, prompts["prompt_id"].iloc[0]), n_prompts),
        "two-way bootstrap": (lambda: naive_two_way_resample(frame, prompts, raters, rng), B),
        "permutation test": (lambda: naive_permutation_resample(frame, prompts, rng), B),
    }
    scaled = {}
    for name, (step, count) in loops.items():
        start = time.perf_counter()
        for _ in range(resamples):
            step()
        scaled[name] = (time.perf_counter() - start) / resamples * count
    return sum(scaled.values()), scaled


def postgres_round_trip(frame: pd.DataFrame, *, B: int, seed: int, base_url: str, keep: bool) -> tuple[float, float]:
    """Write ``frame`` as a study into a scratch database, read it back through the export path and report on it.

    Prints and returns (seconds to read through ``judgments_from_export``, seconds for the report on what was read).
    """
    with scratch_database(base_url, keep=keep) as url:
        start = time.perf_counter()
        django_setup(url)
        study_id = study_build(frame)
        built = time.perf_counter() - start
        print(f"\nPostgreSQL: {len(frame):,} judgments written to a scratch study (migrate + COPY) in {built:.1f} s")

        start = time.perf_counter()
        read = judgments_from_export(study_id)
        read_seconds = time.perf_counter() - start
        start = time.perf_counter()
        report, _ = full_report(read, B=B, seed=seed)
        report_seconds = time.perf_counter() - start

        expected = frame.assign(y=frame["choice"].map(SCORE)).groupby("question")["y"].mean()
        preference = report["preference"]
        got = preference[(preference["scope"] == "overall") & (preference["method"] == intervals.DEFAULT_METHOD)]
        for row in got.itertuples():
            if abs(row.s - expected[row.question]) > 1e-12:
                raise SystemExit(f"Read-back mismatch for {row.question}: s {row.s} != {expected[row.question]}.")
        print(f"  read through the export path (judgments_frame, one query) {read_seconds:7.2f} s, {len(read):,} rows")
        print(f"  full report on the judgments read back                    {report_seconds:7.2f} s")
        print(f"  read + report                                             {read_seconds + report_seconds:7.2f} s")
        if keep:
            print(f"  kept: {url} (study {study_id})")
    return read_seconds, report_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--B", type=int, default=interval_core.DEFAULT_B)
    parser.add_argument("--seed", type=int, default=interval_core.DEFAULT_SEED)
    parser.add_argument("--naive-resamples", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="run the report this many times; print the fastest")
    parser.add_argument("--study", type=int, help="read this study of DATABASE_URL through the export path")
    parser.add_argument(
        "--postgres", action="store_true", help="also write the judgments to a scratch PostgreSQL study and time the "
        "report read back through the export path",
    )  # fmt: skip
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="the PostgreSQL server for --postgres (its scratch database is drawbench_bench_stats)",
    )
    parser.add_argument("--keep-database", action="store_true", help="keep the scratch database of --postgres")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.study is not None:
        django_setup()
        frame = judgments_from_export(args.study)
        source = f"study {args.study} through the export path"
    else:
        frame = synthetic_judgments(args.judgments, args.seed)
        source = "simulated DrawBench-shaped study"
    print(f"data: {len(frame):,} judgments ({source}), built in {time.perf_counter() - start:.2f} s")
    print(
        f"      {frame['prompt_id'].nunique()} prompts, {frame['category'].nunique()} categories, "
        f"{frame['rater_id'].nunique():,} raters, {frame['question'].nunique()} questions; B = {args.B}"
    )

    runs = []
    for _ in range(max(args.repeat, 1)):
        start = time.perf_counter()
        report, timings = full_report(frame, B=args.B, seed=args.seed)
        runs.append((time.perf_counter() - start, timings))
    fast, timings = min(runs, key=lambda run: run[0])

    preference = report["preference"]
    overall = preference[(preference["scope"] == "overall")]
    print("\noverall s (a tie scores ½) by question and method:")
    for row in overall.itertuples():
        print(f"  {row.question:10s} {row.method:22s} s = {row.s:.4f}  [{row.low:.4f}, {row.high:.4f}]")
    for question in QUESTIONS:
        test = report[f"permutation {question}"]
        alpha = report[f"agreement {question}"]
        bias = report[f"position bias {question}"]
        print(
            f"  {question:10s} permutation p = {test.p_value:.4f}; alpha nominal {alpha['alpha_nominal']:.3f}, "
            f"ordinal {alpha['alpha_ordinal']:.3f}, raw agreement {alpha['raw_agreement']:.3f}; "
            f"P(left | decisive) = {bias.estimate:.4f} [{bias.low:.4f}, {bias.high:.4f}]"
        )
    print(f"  rows in the preference table: {len(preference)}; raters diagnosed: {len(report['raters']):,}")

    print(f"\nvectorised report, seconds by part (fastest of {len(runs)}: {', '.join(f'{r[0]:.2f}' for r in runs)}):")
    for name, seconds in timings.items():
        print(f"  {name:32s} {seconds:7.3f}")
    print(f"  {'total':32s} {fast:7.3f}")

    if args.postgres:
        postgres_round_trip(frame, B=args.B, seed=args.seed, base_url=args.database_url, keep=args.keep_database)

    naive_total, naive_parts = naive_timing(frame, B=args.B, resamples=args.naive_resamples, seed=args.seed)
    print(f"\nnaive pandas loops, timed on {args.naive_resamples} resamples each and scaled to the report's counts:")
    for name, seconds in naive_parts.items():
        print(f"  {name:32s} {seconds:9.1f}")
    print(f"  {'total (bootstrap loops only)':32s} {naive_total:9.1f}")
    print(f"\nvectorised {fast:.2f} s vs naive pandas {naive_total:,.0f} s: {naive_total / fast:,.0f}x faster")


if __name__ == "__main__":
    main()
