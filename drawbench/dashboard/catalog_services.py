"""Catalog writes for the dashboard's pages and the API: evaluated models, uploaded prompt sets, uploaded sample
imports and generation runs started by hand.

Each goes through the service the command line uses (``load_prompts csv``: ``prompts.load_custom`` then
``catalog.services.prompt_set_import``; ``import_samples``: ``generation.services.samples_import``), so an upload is
checked exactly as a file on disk is, and is all or nothing.

Uploaded zips are opened defensively before anything is written to disk: every member name must be a plain relative
path (no ``..``, no absolute path, no drive, no link), no image may be larger uncompressed than
DRAWBENCH_MAX_IMAGE_BYTES, and the whole archive no larger than DRAWBENCH_MAX_IMPORT_BYTES; members are copied with
those limits enforced on the bytes actually read, whatever the zip's headers claim.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import shutil
import stat
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from drawbench.backends.base import backend_class
from drawbench.backends.imported import ImageImportError
from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.catalog.services import PromptSetImportResult, prompt_set_import
from drawbench.dashboard.models import SampleImportJob
from drawbench.generation.models import GenerationRun
from drawbench.generation.services import (
    ImportReport,
    generation_run_create,
    generation_run_start,
    samples_import,
)
from prompts import PromptFileError, load_custom

logger = logging.getLogger(__name__)

PROMPT_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
# A prompt file of 100,000 prompts is a few MB; anything this large is a mistake.
DEFAULT_MAX_PROMPT_FILE_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_IMPORT_BYTES = 4 * 1024**3
DEFAULT_MAX_IMPORT_MEMBERS = 200_000
# Zip members that archivers add and an import ignores.
_IGNORED_MEMBER = re.compile(r"(^|/)(__MACOSX|\.DS_Store|Thumbs\.db)(/|$)")
_SAFE_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_COPY_CHUNK = 1024 * 1024
# Fields of an evaluated model that say which samples it makes: frozen once it has samples or runs.
IDENTITY_FIELDS = ("name", "version", "backend", "config")


def _limit(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def safe_file_name(name: str, *, default: str) -> str:
    """The base name of an uploaded file, reduced to letters, digits, dots, dashes and underscores."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    cleaned = _SAFE_FILE_NAME.sub("_", base).strip("._")
    return cleaned[:100] or default


# --- evaluated models -----------------------------------------------------------------------------------------


def evaluated_model_config_errors(*, backend: str, config: Any) -> dict[str, str]:
    """{field: message} for a backend path that is no backend, or a config the backend refuses (its message names
    the key); empty when both are fine."""
    try:
        cls = backend_class(backend)
    except ImproperlyConfigured as exc:
        return {"backend": str(exc)}
    try:
        cls.validate_config(config)
    except ImproperlyConfigured as exc:
        return {"config": str(exc)}
    except (TypeError, ValueError) as exc:  # a backend whose __init__ trips over a value of the wrong kind
        return {"config": f"{cls.__name__}: {exc}"}
    return {}


def evaluated_model_create(
    *, name: str, version: str = "1", description: str = "", backend: str, config: Any = None
) -> EvaluatedModel:
    """A new evaluated model; its config is checked against its backend first."""
    config = {} if config is None else config
    errors = evaluated_model_config_errors(backend=backend, config=config)
    if errors:
        raise ValidationError(errors)
    model = EvaluatedModel(name=name, version=version, description=description, backend=backend, config=config)
    model.full_clean()
    model.save()
    return model


def evaluated_model_usage(*, model: EvaluatedModel) -> tuple[int, int]:
    """(samples, generation runs) of the model."""
    return model.samples.count(), model.generation_runs.count()


@transaction.atomic
def evaluated_model_update(*, model: EvaluatedModel, **fields: Any) -> EvaluatedModel:
    """Change the model's fields. Its name, version, backend and config are what its samples were made with (and
    name@version seeds them): once it has samples or generation runs, they are frozen; add a new version instead.
    The description may always change."""
    model = EvaluatedModel.objects.select_for_update().get(pk=model.pk)
    unknown = set(fields) - {"description", *IDENTITY_FIELDS}
    if unknown:
        raise ValueError(f"evaluated_model_update: unknown field(s) {sorted(unknown)}")
    changed = {name: value for name, value in fields.items() if getattr(model, name) != value}
    frozen = [name for name in IDENTITY_FIELDS if name in changed]
    if frozen:
        samples, runs = evaluated_model_usage(model=model)
        if samples or runs:
            raise ValidationError(
                {
                    name: ValidationError(
                        f"{model} has {samples} sample(s) and {runs} generation run(s) made with its {name}; "
                        "add a new version instead of changing it",
                        code="model_in_use",
                    )
                    for name in frozen
                }
            )
    if "backend" in changed or "config" in changed:
        errors = evaluated_model_config_errors(
            backend=changed.get("backend", model.backend), config=changed.get("config", model.config)
        )
        if errors:
            raise ValidationError(errors)
    for name, value in changed.items():
        setattr(model, name, value)
    model.full_clean()
    model.save()
    return model


# --- prompt sets ----------------------------------------------------------------------------------------------


def _prompt_file_error(exc: PromptFileError) -> ValidationError:
    return ValidationError(f"{exc.message} (nothing was imported)", code="prompt_file")


def prompt_set_upload(
    *, file: IO[bytes], file_name: str, slug: str, title: str = ""
) -> tuple[PromptSetImportResult, tuple[str, ...]]:
    """Load an uploaded CSV, TSV or JSONL prompt file as ``load_prompts csv`` does: the file's name, line and field
    in every error, nothing imported on any error. Returns the import's result and the loader's warnings."""
    name = safe_file_name(file_name, default="prompts.csv")
    suffix = Path(name).suffix.lower()
    if suffix not in PROMPT_FILE_SUFFIXES:
        raise ValidationError(
            f"{name}: expected a .csv, .tsv, .jsonl or .ndjson file, not {suffix or 'no extension'}", code="prompt_file"
        )
    limit = _limit("DRAWBENCH_MAX_PROMPT_FILE_BYTES", DEFAULT_MAX_PROMPT_FILE_BYTES)
    with tempfile.TemporaryDirectory(prefix="drawbench-prompts-") as folder:
        path = Path(folder) / name
        with path.open("wb") as out:
            if _copy_limited(file, out, limit) is None:
                raise ValidationError(f"{name}: larger than {limit} bytes", code="prompt_file")
        return _prompt_set_load(path, source=f"upload:{name}", slug=slug, title=title)


def prompt_set_from_prompts(
    *, prompts: Iterable[Mapping[str, Any]], slug: str, title: str = ""
) -> tuple[PromptSetImportResult, tuple[str, ...]]:
    """A prompt set from a list of objects ({"prompt", "category", optional "id", other keys as metadata}), checked
    as a JSONL file is: an error names the item as line N (the N-th prompt, from 1) and its field."""
    with tempfile.TemporaryDirectory(prefix="drawbench-prompts-") as folder:
        path = Path(folder) / "prompts.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for item in prompts:
                out.write(json.dumps(item, ensure_ascii=False) + "\n")
        return _prompt_set_load(path, source="api:prompts", slug=slug, title=title)


def _prompt_set_load(path: Path, *, source: str, slug: str, title: str):
    try:
        loaded = load_custom(path, slug=slug, title=title or None)
    except PromptFileError as exc:
        raise _prompt_file_error(exc) from exc
    loaded = dataclasses.replace(loaded, source=source)
    return prompt_set_import(loaded=loaded), loaded.warnings


# --- sample imports -------------------------------------------------------------------------------------------


def _copy_limited(source: IO[bytes], out: IO[bytes], limit: int) -> int | None:
    """Copy at most ``limit`` bytes; None if there were more."""
    copied = 0
    while chunk := source.read(_COPY_CHUNK):
        copied += len(chunk)
        if copied > limit:
            return None
        out.write(chunk)
    return copied


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name or "\\" in name:
        return "a name with a backslash or NUL character"
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "an absolute path; members must be relative"
    if ".." in path.parts:
        return "a path that climbs out of the archive with '..'"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link; only plain files and folders are imported"
    return None


def archive_extract(*, archive: IO[bytes], archive_name: str, destination: Path) -> Path:
    """Extract an uploaded zip into ``destination`` after checking every member (see the module docstring); returns
    the folder to import: ``destination``, or its only top-level folder when the zip holds one non-numeric folder
    (a zipped ``samples/`` folder). ``ImageImportError`` lists every problem; nothing is extracted then."""
    max_member = int(settings.DRAWBENCH_MAX_IMAGE_BYTES)
    max_total = _limit("DRAWBENCH_MAX_IMPORT_BYTES", DEFAULT_MAX_IMPORT_BYTES)
    max_members = _limit("DRAWBENCH_MAX_IMPORT_MEMBERS", DEFAULT_MAX_IMPORT_MEMBERS)
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImageImportError(archive_name, [f"not a readable zip archive ({exc})"]) from exc
    with bundle:
        members = [m for m in bundle.infolist() if not _IGNORED_MEMBER.search(m.filename)]
        problems: list[tuple[str, str] | str] = []
        if len(members) > max_members:
            problems.append(f"{len(members)} members, over the limit of {max_members} (DRAWBENCH_MAX_IMPORT_MEMBERS)")
        total = 0
        seen: set[str] = set()
        for member in members:
            problem = _member_problem(member)
            if problem:
                problems.append((member.filename, problem))
                continue
            if member.filename in seen:
                problems.append((member.filename, "stored twice in the archive"))
                continue
            seen.add(member.filename)
            if member.is_dir():
                continue
            total += member.file_size
            if member.file_size > max_member:
                problems.append(
                    (
                        member.filename,
                        f"{member.file_size} bytes uncompressed, over the limit of {max_member} per image "
                        "(DRAWBENCH_MAX_IMAGE_BYTES); refused as a possible zip bomb",
                    )
                )
        if total > max_total:
            problems.append(
                f"{total} bytes uncompressed in all, over the limit of {max_total} (DRAWBENCH_MAX_IMPORT_BYTES); "
                "refused as a possible zip bomb"
            )
        if not problems and not any(not m.is_dir() for m in members):
            problems.append("the archive holds no files")
        if problems:
            raise ImageImportError(archive_name, problems)

        root = destination.resolve()
        for member in members:
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):  # already refused above; a second lock on the same door
                raise ImageImportError(archive_name, [(member.filename, "a path outside the archive's folder")])
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with bundle.open(member) as source, target.open("wb") as out:
                    if _copy_limited(source, out, max_member) is None:
                        raise ImageImportError(
                            archive_name, [(member.filename, f"more than {max_member} bytes uncompressed")]
                        )
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise ImageImportError(archive_name, [(member.filename, f"cannot be extracted ({exc})")]) from exc

    entries = [entry for entry in root.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].name.isdigit():
        return entries[0]
    return root


def samples_import_upload(
    *,
    evaluated_model: EvaluatedModel,
    prompt_set: PromptSet,
    archive: IO[bytes],
    archive_name: str,
    samples_per_prompt: int,
    manifest: IO[bytes] | None = None,
    manifest_name: str = "manifest.csv",
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportReport:
    """Import an uploaded zip through ``samples_import``, as ``import_samples`` does: a zip of the folder layout
    ``<prompt position>/<k>.png``, or, with ``manifest``, a manifest CSV whose image paths are relative to the zip's
    root. All or nothing; problems come as one ``ImageImportError``. ``progress(phase, done, total)`` follows the
    phases "extracting", "checking" (total: the files extracted) and "storing"."""
    archive_label = safe_file_name(archive_name, default="samples.zip")
    with tempfile.TemporaryDirectory(prefix="drawbench-import-") as folder:
        images = Path(folder) / "images"
        images.mkdir()
        if progress:
            progress("extracting", 0, 0)
        root = archive_extract(archive=archive, archive_name=archive_label, destination=images)
        files = sum(1 for path in images.rglob("*") if path.is_file())
        source = root
        if manifest is not None:
            name = safe_file_name(manifest_name, default="manifest.csv")
            if Path(name).suffix.lower() != ".csv":
                raise ImageImportError(name, [f"{name}: a manifest is a .csv file"])
            source = images / name
            if source.exists():
                raise ImageImportError(name, [f"{name}: the zip holds a file of the same name; rename the manifest"])
            with source.open("wb") as out:
                if _copy_limited(manifest, out, DEFAULT_MAX_PROMPT_FILE_BYTES) is None:
                    raise ImageImportError(name, [f"{name}: larger than {DEFAULT_MAX_PROMPT_FILE_BYTES} bytes"])
        try:
            report = samples_import(
                evaluated_model=evaluated_model,
                prompt_set=prompt_set,
                source=source,
                samples_per_prompt=samples_per_prompt,
                progress=(lambda phase, done, total: progress(phase, done, total or files)) if progress else None,
            )
        finally:
            shutil.rmtree(images, ignore_errors=True)
    if manifest is None:
        report.source = archive_label
    else:
        report.source = f"{safe_file_name(manifest_name, default='manifest.csv')} + {archive_label}"
    return report


# --- sample import jobs: the dashboard's uploads, run by a worker ---------------------------------------------

IMPORT_UPLOAD_DIR = "imports"
# Progress is written at most this often (seconds) within a phase.
PROGRESS_INTERVAL_S = 0.5


def sample_import_job_create(
    *,
    evaluated_model: EvaluatedModel,
    prompt_set: PromptSet,
    samples_per_prompt: int,
    archive: IO[bytes],
    archive_name: str,
    manifest: IO[bytes] | None = None,
    manifest_name: str = "",
    created_by=None,
) -> SampleImportJob:
    """Keep the upload in default storage (which workers share) and queue its import on the cpu queue once this
    transaction commits. The job's page follows it; nothing is imported until the task has checked everything."""
    folder = f"{IMPORT_UPLOAD_DIR}/{uuid.uuid4().hex}"
    archive_label = safe_file_name(archive_name, default="samples.zip")
    job = SampleImportJob(
        evaluated_model=evaluated_model,
        prompt_set=prompt_set,
        samples_per_prompt=samples_per_prompt,
        archive_name=archive_label,
        created_by=created_by,
    )
    if samples_per_prompt < 1:
        raise ValidationError({"samples_per_prompt": "must be at least 1"})
    job.archive_file = default_storage.save(f"{folder}/{archive_label}", File(archive))
    if manifest is not None:
        job.manifest_name = safe_file_name(manifest_name, default="manifest.csv")
        job.manifest_file = default_storage.save(f"{folder}/manifest-{job.manifest_name}", File(manifest))
    job.full_clean()
    job.save()
    transaction.on_commit(lambda: _sample_import_job_enqueue(job.pk))
    return job


def sample_import_job_submit(*, fields: Mapping[str, Any], created_by=None) -> SampleImportJob:
    """sample_import_job_create from an upload's checked fields (the dashboard form's cleaned_data, the API's
    validated_data): evaluated_model, prompt_set, samples_per_prompt, archive and, optionally, manifest."""
    manifest = fields.get("manifest")
    return sample_import_job_create(
        evaluated_model=fields["evaluated_model"],
        prompt_set=fields["prompt_set"],
        samples_per_prompt=fields["samples_per_prompt"],
        archive=fields["archive"],
        archive_name=fields["archive"].name,
        manifest=manifest,
        manifest_name=manifest.name if manifest else "",
        created_by=created_by,
    )


def _sample_import_job_enqueue(job_id: int) -> None:
    from drawbench.dashboard.tasks import sample_import_job_run

    sample_import_job_run.apply_async(args=(job_id,), queue=settings.DRAWBENCH_QUEUES["cpu"])


def _job_progress_writer(job: SampleImportJob) -> Callable[[str, int, int], None]:
    last = {"phase": "", "at": 0.0}

    def write(phase: str, done: int, total: int) -> None:
        # Calls from inside the import's own transaction would only show once it commits, and roll back with it.
        if transaction.get_connection().in_atomic_block:
            return
        now = time.monotonic()
        if phase == last["phase"] and now - last["at"] < PROGRESS_INTERVAL_S:
            return
        last.update(phase=phase, at=now)
        SampleImportJob.objects.filter(pk=job.pk).update(phase=phase, done=done, total=total)

    return write


def _storage_copy(name: str, destination: Path) -> Path:
    with default_storage.open(name, "rb") as source, destination.open("wb") as out:
        shutil.copyfileobj(source, out, _COPY_CHUNK)
    return destination


# The first key of the session-level advisory lock a worker holds on PostgreSQL while it runs an import job (the
# second is the job's id): "dIMP".
IMPORT_LOCK_CLASS = 0x64494D50


@contextlib.contextmanager
def _job_runner_lock(job_id: int):
    """Whether this worker may run the job: on PostgreSQL, a session-level advisory lock on it, held for the whole
    run and released when the run ends or its connection dies with its worker. So a job still marked running whose
    lock is free was abandoned by a dead worker; one whose lock is held is being run. Elsewhere (SQLite: the demo's
    one embedded worker) there is no other worker to race."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [IMPORT_LOCK_CLASS, job_id])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [IMPORT_LOCK_CLASS, job_id])


def sample_import_job_execute(*, job_id: int) -> SampleImportJob:
    """Run a pending job: its upload through ``samples_import_upload``, all or nothing. The upload is deleted from
    storage whatever the outcome.

    A task delivered twice never runs a job twice: a finished job is left alone, and so is a running one whose worker
    is alive (it holds the job's lock, see _job_runner_lock). A running job whose worker died (acks_late hands its
    message to another worker) is taken over and run from the start: the dead run's import was one transaction,
    rolled back with its connection, and its upload is still in storage."""
    with _job_runner_lock(job_id) as may_run:
        if not may_run:
            return SampleImportJob.objects.filter(pk=job_id).first()
        return _sample_import_job_run(job_id=job_id)


def _sample_import_job_run(*, job_id: int) -> SampleImportJob:
    with transaction.atomic():
        job = SampleImportJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in (SampleImportJob.Status.PENDING, SampleImportJob.Status.RUNNING):
            return job
        if job.status == SampleImportJob.Status.RUNNING:
            logger.warning("sample import job %s: its worker is gone; running it again from the start", job.pk)
        job.status = SampleImportJob.Status.RUNNING
        job.started_at = timezone.now()
        job.phase = "extracting"
        job.done = job.total = 0
        job.save(update_fields=["status", "started_at", "phase", "done", "total"])
    problems: list[str] = []
    count = 0
    report: ImportReport | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="drawbench-upload-") as folder:
            archive = _storage_copy(job.archive_file, Path(folder) / "archive.zip")
            manifest = _storage_copy(job.manifest_file, Path(folder) / "manifest.csv") if job.manifest_file else None
            with (
                archive.open("rb") as archive_stream,
                manifest.open("rb") if manifest else contextlib.nullcontext() as manifest_stream,
            ):
                report = samples_import_upload(
                    evaluated_model=job.evaluated_model,
                    prompt_set=job.prompt_set,
                    archive=archive_stream,
                    archive_name=job.archive_name,
                    samples_per_prompt=job.samples_per_prompt,
                    manifest=manifest_stream,
                    manifest_name=job.manifest_name or "manifest.csv",
                    progress=_job_progress_writer(job),
                )
    except ImageImportError as exc:
        problems, count = exc.problems, exc.count
    except ValidationError as exc:
        problems = list(exc.messages)
        count = len(problems)
    except Exception as exc:  # noqa: BLE001 - the page must say the import stopped, whatever stopped it
        logger.exception("sample import job %s failed", job.pk)
        problems, count = [f"the import stopped: {type(exc).__name__}: {exc}"], 1
    finally:
        for name in (job.archive_file, job.manifest_file):
            if name:
                default_storage.delete(name)
    job.refresh_from_db(fields=["done", "total"])
    job.archive_file = job.manifest_file = ""
    job.finished_at = timezone.now()
    if report is not None:
        job.status = SampleImportJob.Status.DONE
        job.phase = ""
        job.done = job.total = report.created + report.already_present
        job.report = {
            "text": str(report),
            "created": report.created,
            "already_present": report.already_present,
            "prompts": report.prompts,
            "prompts_without_samples": report.prompts_without_samples,
        }
    else:
        job.status = SampleImportJob.Status.FAILED
        job.problems = problems
        job.problem_count = count
    job.save()
    return job


# --- generation runs ------------------------------------------------------------------------------------------


@transaction.atomic
def generation_run_create_and_start(
    *,
    evaluated_model: EvaluatedModel,
    prompt_set: PromptSet,
    samples_per_prompt: int,
    categories: Iterable[str] = (),
    batch_size: int = 4,
) -> GenerationRun:
    """A run of a generated model over a prompt set (or some of its categories), queued once this commits."""
    run = generation_run_create(
        evaluated_model=evaluated_model,
        prompt_set=prompt_set,
        categories=list(categories),
        samples_per_prompt=samples_per_prompt,
        batch_size=batch_size,
    )
    return generation_run_start(run=run)
