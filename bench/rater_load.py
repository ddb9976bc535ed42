"""Benchmark: many raters answering at once through gunicorn + PostgreSQL, against the ceiling of the same app.

A throwaway database (created, migrated, filled, dropped at the end) holds an open two-model study of --prompts
prompts, --ratings raters per comparison, 8 samples per side (rows only: nothing reads image files on this path).
gunicorn serves the project with --workers sync workers, each keeping its database connection (CONN_MAX_AGE).

1. Real path: --raters concurrent simulated raters (one asyncio task and one HTTP connection each, spread over
   --clients client processes, one event loop each, so that the client is not what queues requests) join through the
   rater API (POST start), fetch their first item (GET assignment), then answer both questions, item after item
   (POST answers, which returns the next item: one request per item), for --duration seconds. Everything a rater's
   request goes through is in it: token authentication, throttling, validation, the locked assignment, idempotency
   on the key, the two judgments, taking the next comparison's slot and drawing its display.
2. Ceiling: the same raters, the same middleware, an endpoint (enabled only here, by DRAWBENCH_BENCH_CEILING) that
   writes the same two judgment rows with one SQL statement in one transaction, for assignments served beforehand.

The two phases alternate --rounds times (other work on the machine comes and goes). Each phase prints answers/s
(each answer is two judgments), judgments/s, p50 and p99 latency and errors; then the rounds together, and a row
check: judgments in the database = 2 × answers acknowledged, no (rater, comparison, question) twice, no comparison
past its target, every slot counter equal to its assignments. The last line is the headline ratio, real / ceiling.
The first --warmup seconds of each phase are not counted. Each phase also prints the CPU time its answers cost,
split between the web workers, PostgreSQL (read from /proc) and the client processes, which says where the time
goes. Prints figures, never asserts on time.

    .venv/bin/python bench/rater_load.py [--raters 64] [--duration 15] [--warmup 3] [--workers 2×CPUs+1]
        [--prompts 3000] [--ratings 25] [--rounds 2] [--database-url postgres://postgres@127.0.0.1:5432/postgres]
        [--clients CPUs] [--keep-database]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCRATCH_DATABASE = "drawbench_bench"
SAMPLES_PER_SIDE = 8
# Model-space answers for the ceiling (the real path sends what a rater sees: left / tie / right).
CEILING_CHOICES = ("A", "tie")


def database_url_for(base_url: str, name: str, *, keep_connections: bool = False) -> str:
    parts = urlsplit(base_url)
    query = "conn_max_age=600" if keep_connections else ""
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", query, ""))


def admin_execute(base_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(database_url_for(base_url, "postgres"), autocommit=True) as connection:
        connection.execute(statement)


@contextmanager
def scratch_database(base_url: str, *, keep: bool):
    admin_execute(base_url, f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)")
    admin_execute(base_url, f"CREATE DATABASE {SCRATCH_DATABASE}")
    try:
        yield database_url_for(base_url, SCRATCH_DATABASE)
    finally:
        if not keep:
            admin_execute(base_url, f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)")


def django_setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "drawbench.settings.base"
    os.environ["DJANGO_DEBUG"] = "false"
    import django

    django.setup()


def migrate(database_url: str) -> None:
    env = os.environ | {"DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "drawbench.settings.base"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


@dataclass
class Fixture:
    token: str
    ceiling_token: str
    ceiling_keys: list[list[str]]


def build_fixture(*, prompts: int, ratings: int, raters: int) -> Fixture:
    """The study the raters answer, and a second one whose assignments the ceiling writes judgments for."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.db import connection
    from PIL import Image

    from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample
    from drawbench.studies.models import Assignment, Comparison, Rater
    from drawbench.studies.services.studies import study_create, study_open

    prompt_set = PromptSet.objects.create(slug="bench", title="Benchmark prompts")
    Prompt.objects.bulk_create(
        Prompt(prompt_set=prompt_set, position=i + 1, text=f"Benchmark prompt {i + 1}", category=f"C{i % 11}")
        for i in range(prompts)
    )
    models = [
        EvaluatedModel.objects.create(name=name, backend="drawbench.backends.imported.ImportBackend")
        for name in ("bench-a", "bench-b")
    ]
    prompt_ids = list(prompt_set.prompts.values_list("id", flat=True))
    # One real image behind every sample: opening a study re-encodes what raters will see (once per source file).
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 150)).save(buffer, format="PNG")
    source = default_storage.save("samples/bench.png", ContentFile(buffer.getvalue()))
    Sample.objects.bulk_create(
        (
            Sample(
                evaluated_model=model,
                prompt_id=prompt_id,
                index=index,
                image=source,
                content_hash=f"{model.pk:08x}{prompt_id:024x}{index:032x}",
                width=64,
                height=64,
            )
            for model in models
            for prompt_id in prompt_ids
            for index in range(SAMPLES_PER_SIDE)
        ),
        batch_size=5000,
    )
    real = study_open(
        study=study_create(
            name="bench: real path",
            prompt_set=prompt_set,
            evaluated_models=models,
            ratings_per_comparison=ratings,
            # No per-rater cap: a rater answers for the whole run.
            max_comparisons_per_rater=None,
        )
    )
    ceiling = study_open(
        study=study_create(
            name="bench: ceiling",
            prompt_set=prompt_set,
            evaluated_models=models,
            ratings_per_comparison=raters,
            max_comparisons_per_rater=None,
        )
    )
    ceiling_raters = Rater.objects.bulk_create(Rater(study=ceiling) for _ in range(raters))
    # Every ceiling rater holds every comparison of the ceiling study: one assignment per ceiling request.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Assignment._meta.db_table} (rater_id, kind, comparison_id, key, left_model_id,"
            " left_sample_ids, right_sample_ids, left_images, right_images, served_at)"
            " SELECT r.id, 'comparison', c.id, replace(gen_random_uuid()::text, '-', ''), c.model_a_id,"
            " '[1, 2, 3, 4, 5, 6, 7, 8]', '[9, 10, 11, 12, 13, 14, 15, 16]', '[]', '[]', NOW()"
            " FROM studies_rater r CROSS JOIN studies_comparison c WHERE r.study_id = %s AND c.study_id = %s",
            [ceiling.pk, ceiling.pk],
        )
        cursor.execute(
            f"UPDATE {Comparison._meta.db_table} SET n_assigned = %s WHERE study_id = %s", [raters, ceiling.pk]
        )
    keys: dict[int, list[str]] = {rater.pk: [] for rater in ceiling_raters}
    for rater_id, key in Assignment.objects.filter(rater__study=ceiling).order_by("id").values_list("rater_id", "key"):
        keys[rater_id].append(key)
    with connection.cursor() as cursor:
        # Statistics for the planner, as a study that has been open a while has them (autovacuum's ANALYZE).
        cursor.execute("ANALYZE")
    return Fixture(token=real.rater_token, ceiling_token=ceiling.rater_token, ceiling_keys=list(keys.values()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def gunicorn(database_url: str, *, workers: int):
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "drawbench.settings.base",
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DRAWBENCH_BENCH_CEILING": "true",
        # The throttles run on every answer, as in production, at a rate no simulated rater reaches.
        "DRAWBENCH_RATER_SUBMIT_RATE": "100000/s",
        "DRAWBENCH_RATER_START_RATE": "100000/s",
        "DRAWBENCH_LOG_LEVEL": "ERROR",
    }
    command = [
        sys.executable, "-m", "gunicorn", "drawbench.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--backlog", "2048", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


async def _warm_up(base: str, token: str, *, workers: int) -> None:
    """Load every worker's URLconf and apps (seconds on a first request) before anything is timed."""
    url = f"{base}/s/{token}/"
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            began = time.monotonic()

            async def hit():
                async with session.get(url) as response:
                    await response.read()

            await asyncio.gather(*(hit() for _ in range(4 * workers)))
            if time.monotonic() - began < 0.5:
                return


TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, CPU seconds used, user + system) of a process, from /proc; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
    return name, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICKS


def cpu_seconds(web_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the web workers (gunicorn's children) and PostgreSQL's processes."""
    used = {"web": 0.0, "database": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is None:
            continue
        name, parent, seconds = stat
        if parent == web_pid:
            used["web"] += seconds
        elif name.startswith("postgres"):
            used["database"] += seconds
    return used


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    answers: int = 0
    acknowledged: int = 0
    errors: list[str] = field(default_factory=list)
    window: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    used: list[int] = field(default_factory=list)


async def _rater(session, base: str, token: str, phase: Phase, start: float, stop: float, warm: float) -> None:
    api = f"{base}/api/rater/{token}"
    async with session.post(f"{api}/start/", json={}) as response:
        if response.status != 201:
            phase.errors.append(f"start: HTTP {response.status}")
            return
        rater_token = (await response.json())["rater_token"]
    headers = {"Authorization": f"Rater {rater_token}"}
    async with session.get(f"{api}/assignment/", headers=headers) as response:
        item = (await response.json())["assignment"]
    while item is not None and time.monotonic() < stop:
        body = {"key": item["key"], "answers": {"fidelity": "left", "alignment": "tie"}, "response_time_ms": 2400}
        began = time.monotonic()
        try:
            async with session.post(f"{api}/answers/", json=body, headers=headers) as response:
                data = await response.json()
                status = response.status
        except (aiohttp.ClientError, ValueError) as exc:
            phase.errors.append(f"answer: {exc!r}")
            continue
        ended = time.monotonic()
        if status == 201:
            phase.acknowledged += 1
        if status not in (200, 201):
            phase.errors.append(f"answer: HTTP {status} {data}")
            break
        if began >= warm and ended <= stop:
            phase.latencies.append(ended - began)
            phase.answers += 1
        item = data["next"]["assignment"]


async def _ceiling_client(
    session, base: str, token: str, *, keys: list[str], phase: Phase, stop: float, warm: float
) -> int:
    """Write judgments for these keys, one request each, until the phase stops: how many keys it used."""
    url = f"{base}/api/rater/{token}/ceiling/"
    used = 0
    for key in keys:
        if time.monotonic() >= stop:
            break
        used += 1
        body = {"key": key, "fidelity": CEILING_CHOICES[0], "alignment": CEILING_CHOICES[1], "response_time_ms": 2400}
        began = time.monotonic()
        try:
            async with session.post(url, json=body) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            phase.errors.append(f"ceiling: {exc!r}")
            continue
        ended = time.monotonic()
        if status == 201:
            phase.acknowledged += 1
        else:
            phase.errors.append(f"ceiling: HTTP {status}")
        if began >= warm and ended <= stop:
            phase.latencies.append(ended - began)
            phase.answers += 1
    return used


@dataclass
class Part:
    """One client process's share of a phase: `raters` simulated raters (submit), or these raters' keys (ceiling)."""

    kind: str
    base: str
    token: str
    start: float
    stop: float
    warm: float
    raters: int = 0
    keys: list[list[str]] = field(default_factory=list)


async def _run_part(part: Part) -> Phase:
    phase = Phase(part.kind)
    connector = aiohttp.TCPConnector(limit=max(part.raters, len(part.keys)), force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    await asyncio.sleep(max(0.0, part.start - time.monotonic()))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if part.kind == "submit":
            await asyncio.gather(
                *(
                    _rater(session, part.base, part.token, phase, part.start, part.stop, part.warm)
                    for _ in range(part.raters)
                )
            )
        else:
            phase.used = await asyncio.gather(
                *(
                    _ceiling_client(
                        session, part.base, part.token, keys=keys, phase=phase, stop=part.stop, warm=part.warm
                    )
                    for keys in part.keys
                )
            )
    return phase


def run_part(part: Part) -> Phase:
    """In a client process: the part's raters on this process's event loop, and the CPU time it took."""
    began = time.process_time()
    phase = asyncio.run(_run_part(part))
    phase.cpu = {"client": time.process_time() - began}
    return phase


def run_phase(name: str, parts: list[Part], *, pool, duration: float, web_pid: int) -> Phase:
    """Run the parts at once, one per client process (monotonic time is the same clock in every process)."""
    cpu_before = cpu_seconds(web_pid)
    phases = pool.map(run_part, parts)
    cpu = cpu_seconds(web_pid)
    phase = merge(name, phases)
    phase.cpu = {"web": cpu["web"] - cpu_before["web"], "database": cpu["database"] - cpu_before["database"]}
    phase.cpu["client"] = sum(part.cpu["client"] for part in phases)
    phase.used = [used for part in phases for used in part.used]
    phase.window = duration
    return phase


def split(items: list, n: int) -> list[list]:
    """`items` in n nearly equal runs."""
    size, extra = divmod(len(items), n)
    runs, at = [], 0
    for i in range(n):
        runs.append(items[at : at + size + (i < extra)])
        at += size + (i < extra)
    return runs


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


def report(phase: Phase) -> float:
    rate = phase.answers / phase.window
    print(
        f"{phase.name:>11}: {rate:7.1f} answers/s = {2 * rate:8.1f} judgments/s · "
        f"p50 {1000 * percentile(phase.latencies, 0.5):6.1f} ms · "
        f"p99 {1000 * percentile(phase.latencies, 0.99):6.1f} ms · "
        f"{len(phase.errors)} errors · {phase.acknowledged} answers acknowledged in all"
    )
    if phase.acknowledged:
        split = " + ".join(f"{1000 * used / phase.acknowledged:.2f} {part}" for part, used in phase.cpu.items())
        print(f"{'':>13}CPU per answer, ms: {split} (warmup included)")
    for error in phase.errors[:5]:
        print(f"           error: {error}")
    return rate


def row_check(*, token: str, acknowledged: int, label: str) -> bool:
    from django.db.models import Count, F, Q

    from drawbench.studies.models import Comparison, Judgment, Study

    study = Study.objects.get(rater_token=token)
    judgments = Judgment.objects.filter(comparison__study=study)
    total = judgments.count()
    distinct = judgments.order_by().values("rater", "comparison", "question").distinct().count()
    per_assignment = set(
        judgments.order_by().values("assignment").annotate(n=Count("id")).values_list("n", flat=True).distinct()
    )
    comparisons = Comparison.objects.filter(study=study).annotate(
        held=Count("assignments", filter=Q(assignments__released_at__isnull=True))
    )
    over = comparisons.filter(held__gt=study.ratings_per_comparison).count()
    drifted = comparisons.exclude(n_assigned=F("held")).count()
    ok = total == 2 * acknowledged and distinct == total and per_assignment <= {2} and not over and not drifted
    print(
        f"{label:>11}: {total} judgment rows for {acknowledged} acknowledged answers (expected {2 * acknowledged}); "
        f"{total - distinct} doubled; {over} comparisons past target; {drifted} slot counters off — "
        f"{'OK' if ok else 'MISMATCH'}"
    )
    return ok


def merge(name: str, phases: list[Phase]) -> Phase:
    merged = Phase(name)
    for phase in phases:
        merged.latencies += phase.latencies
        merged.answers += phase.answers
        merged.acknowledged += phase.acknowledged
        merged.errors += phase.errors
        merged.window += phase.window
        for part, used in phase.cpu.items():
            merged.cpu[part] = merged.cpu.get(part, 0.0) + used
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raters", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0, help="Seconds counted per phase, after the warmup.")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument(
        "--rounds", type=int, default=2, help="Submit then ceiling, this many times (the machine's load drifts)."
    )
    parser.add_argument(
        "--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn sync workers (2 × CPUs + 1)."
    )
    parser.add_argument(
        "--prompts", type=int, default=3000, help="Enough comparisons that no rater runs out during the run."
    )
    parser.add_argument("--ratings", type=int, default=25, help="Raters wanted per comparison.")
    parser.add_argument(
        "--clients",
        type=int,
        default=os.cpu_count() or 1,
        help="Client processes the raters are spread over (one event loop each), so that the client is not what "
        "queues the requests.",
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()

    print(
        f"rater_load: {args.raters} raters, {args.workers} gunicorn workers, {os.cpu_count()} CPUs "
        f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}), {args.prompts} prompts × "
        f"{args.ratings} ratings, {args.rounds} rounds of {args.duration:.0f} s per phase after {args.warmup:.0f} s "
        "warmup"
    )
    with scratch_database(args.database_url, keep=args.keep_database) as database_url:
        migrate(database_url)
        django_setup(database_url)
        from django.db import connections

        fixture = build_fixture(prompts=args.prompts, ratings=args.ratings, raters=args.raters)
        served = database_url_for(args.database_url, SCRATCH_DATABASE, keep_connections=True)
        ceiling_keys = fixture.ceiling_keys
        submits, ceilings = [], []
        # Client processes are forked before anything else holds a database connection.
        connections.close_all()
        with (
            gunicorn(served, workers=args.workers) as (base, web_pid),
            multiprocessing.get_context("fork").Pool(args.clients) as pool,
        ):
            asyncio.run(_warm_up(base, fixture.token, workers=args.workers))

            def window() -> tuple[float, float, float]:
                start = time.monotonic() + 0.5  # every client process is ready by then
                return start, start + args.warmup + args.duration, start + args.warmup

            for round_ in range(1, args.rounds + 1):
                start, stop, warm = window()
                submit = run_phase(
                    f"submit {round_}",
                    [
                        Part("submit", base, fixture.token, start, stop, warm, raters=len(run))
                        for run in split(list(range(args.raters)), args.clients)
                    ],
                    pool=pool,
                    duration=args.duration,
                    web_pid=web_pid,
                )
                start, stop, warm = window()
                ceiling = run_phase(
                    f"ceiling {round_}",
                    [
                        Part("ceiling", base, fixture.ceiling_token, start, stop, warm, keys=run)
                        for run in split(ceiling_keys, args.clients)
                    ],
                    pool=pool,
                    duration=args.duration,
                    web_pid=web_pid,
                )
                # The keys a round used are not used again.
                ceiling_keys = [keys[used:] for keys, used in zip(ceiling_keys, ceiling.used, strict=True)]
                submits.append(submit)
                ceilings.append(ceiling)
                submit_rate, ceiling_rate = report(submit), report(ceiling)
                print(f"{'':>11}ratio {submit_rate / ceiling_rate:.2f}, load average {os.getloadavg()[0]:.2f}")
        real, ceiling = merge("submit", submits), merge("ceiling", ceilings)
        print(f"all rounds (load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}):")
        submit_rate = report(real)
        ceiling_rate = report(ceiling)
        checks = [
            row_check(token=fixture.token, acknowledged=real.acknowledged, label="submit"),
            row_check(token=fixture.ceiling_token, acknowledged=ceiling.acknowledged, label="ceiling"),
        ]
        connections.close_all()
    p99 = 1000 * percentile(real.latencies, 0.99)
    print(
        f"submit / ceiling = {submit_rate / ceiling_rate if ceiling_rate else float('nan'):.2f} "
        f"({submit_rate:.0f} vs {ceiling_rate:.0f} answers/s; "
        f"submit p99 {p99:.0f} ms, {len(real.errors) + len(ceiling.errors)} errors, rows "
        f"{'OK' if all(checks) else 'MISMATCH'})"
    )


if __name__ == "__main__":
    main()
