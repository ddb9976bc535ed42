"""Writes of the generation app: storing samples, importing them, and generation runs split into Celery tasks.

Sample files are content-addressed (``samples/<sha256[:2]>/<sha256>.png``, the hash of the stored bytes) and carry
no metadata, so neither a file nor its URL says which model made it. A sample row is unique per (model, prompt,
index): storing one twice returns the first, which is what makes a re-executed task harmless.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone
from PIL import Image

from drawbench.backends.base import (
    BackendError,
    GeneratedImage,
    SampleRequest,
    TransientBackendError,
    backend_class,
    backend_for,
    sample_seed_for,
)
from drawbench.backends.imported import ImageImportError, ImportBackend, PromptRef
from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample
from drawbench.generation.models import GenerationFailure, GenerationRun
from drawbench.generation.selectors import generation_run_prompts

logger = logging.getLogger(__name__)

SAMPLE_DIR = "samples"


# --- samples --------------------------------------------------------------------------------------------------


def _rgb(image: Image.Image) -> Image.Image:
    """The image as RGB; transparency is composited on white, as a browser shows it on a white page."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def sample_png_bytes(image: Image.Image) -> bytes:
    """PNG bytes of the image's pixels and nothing else: no text chunks, EXIF, ICC profile or other metadata."""
    rgb = _rgb(image)
    # A fresh image built from raw pixels has an empty .info, so PNG saving has no metadata to copy over.
    bare = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG")
    return buffer.getvalue()


def sample_file_name(content_hash: str) -> str:
    return f"{SAMPLE_DIR}/{content_hash[:2]}/{content_hash}.png"


def _sample_file_store(data: bytes) -> tuple[str, str]:
    """Store ``data`` under its content hash (once: identical bytes share a file); return (name, hash)."""
    content_hash = hashlib.sha256(data).hexdigest()
    name = sample_file_name(content_hash)
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:
            # Another writer stored the same bytes between exists() and save(); storage kept both under two names.
            default_storage.delete(saved)
    return name, content_hash


def sample_store(
    *,
    evaluated_model: EvaluatedModel,
    prompt: Prompt,
    index: int,
    seed: int | None,
    image: Image.Image,
    settings: dict[str, Any],
) -> Sample:
    """Store sample ``index`` of ``prompt`` by ``evaluated_model``, or return the one already stored.

    Idempotent on (model, prompt, index), also under concurrent writers: the database's unique constraint decides.
    """
    lookup = {"evaluated_model": evaluated_model, "prompt": prompt, "index": index}
    existing = Sample.objects.filter(**lookup).first()
    if existing is not None:
        return existing
    width, height = image.size
    max_pixels = _setting_int("DRAWBENCH_MAX_IMAGE_PIXELS")
    if width * height > max_pixels:
        raise ValidationError(f"a {width}x{height} image is over DRAWBENCH_MAX_IMAGE_PIXELS ({max_pixels})")
    name, content_hash = _sample_file_store(sample_png_bytes(image))
    sample = Sample(
        **lookup,
        seed=seed,
        image=name,
        content_hash=content_hash,
        width=width,
        height=height,
        settings=settings,
    )
    try:
        with transaction.atomic():
            sample.full_clean()
            sample.save()
    except (ValidationError, IntegrityError):
        existing = Sample.objects.filter(**lookup).first()
        if existing is None:
            # The row was refused: take back the file stored for it, unless another row uses the same bytes.
            _orphans_delete({name})
            raise
        return existing
    return sample


def generated_samples_store(
    *, evaluated_model: EvaluatedModel, prompt: Prompt, images: Sequence[GeneratedImage], settings: dict[str, Any]
) -> int:
    """Store a backend's images of one prompt (its files, then its rows in one INSERT); returns how many were given.

    Idempotent like ``sample_store``: a row another worker stored meanwhile (a redelivered task) is kept and the new
    one dropped (ON CONFLICT DO NOTHING). Its file is the same file: the same seed draws the same pixels.
    """
    max_pixels = _setting_int("DRAWBENCH_MAX_IMAGE_PIXELS")
    samples = []
    for generated in images:
        width, height = generated.image.size
        if width * height > max_pixels:
            raise ValidationError(f"a {width}x{height} image is over DRAWBENCH_MAX_IMAGE_PIXELS ({max_pixels})")
        name, content_hash = _sample_file_store(sample_png_bytes(generated.image))
        sample = Sample(
            evaluated_model=evaluated_model,
            prompt=prompt,
            index=generated.request.index,
            seed=generated.request.seed,
            image=name,
            content_hash=content_hash,
            width=width,
            height=height,
            settings={**settings, **generated.settings, "seed": generated.request.seed},
        )
        # The model and prompt are rows already read, and the database enforces the constraints (the unique
        # (model, prompt, index) is what ignore_conflicts is for): checking them again in Python costs four queries
        # per image, more than everything else the platform does for it (bench/generation.py).
        sample.full_clean(exclude=["evaluated_model", "prompt"], validate_constraints=False)
        samples.append(sample)
    Sample.objects.bulk_create(samples, ignore_conflicts=True)
    return len(samples)


def _setting_int(name: str) -> int:
    return int(getattr(django_settings, name))


# --- import ---------------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    source: str
    created: int
    already_present: int
    prompts: int
    prompts_without_samples: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"Imported {self.created} sample(s) of {self.prompts} prompt(s) from {self.source}"
            f" ({self.already_present} already present)."
        )
        if self.prompts_without_samples:
            text += f" {len(self.prompts_without_samples)} prompt(s) of the set have no samples in this source."
        return text


def samples_import(
    *,
    evaluated_model: EvaluatedModel,
    prompt_set: PromptSet,
    source: Path,
    samples_per_prompt: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImportReport:
    """Import samples made elsewhere from a folder or a manifest CSV (see drawbench.backends.imported).

    ``samples_per_prompt`` has no default: a source must hold exactly that many images per prompt it covers,
    numbered from 0 (prompt folders are the prompts' 1-based positions). ``progress(phase, done, total)``, if given,
    is called as images are checked (phase "checking", total 0: not known in advance) and stored ("storing"; the
    calls made while storing come from inside the import's transaction, so a writer to the database sees them only
    if it writes elsewhere).

    All or nothing: every problem of the source is reported together in an ``ImageImportError`` before anything is
    written, and the rows are written in one transaction. If that transaction fails (or is interrupted), the files it
    stored are deleted again unless another sample row uses them (files are shared by content). Importing the same
    source twice changes nothing; importing different images over a model's existing samples is refused. Called
    inside a caller's transaction (``samples_import_command``), its failure rolls back the caller's writes too.
    """
    source = Path(source)
    prompts = list(prompt_set.prompts.all())
    refs = [PromptRef(id=p.pk, text=p.text, position=p.position) for p in prompts]
    backend = ImportBackend()
    checked = (lambda n: progress("checking", n, 0)) if progress else None
    items = backend.plan(source, refs, samples_per_prompt, progress=checked)

    existing = {
        (s.prompt_id, s.index): s
        for s in Sample.objects.filter(evaluated_model=evaluated_model, prompt__prompt_set=prompt_set)
    }
    conflicts = [
        (
            item.where,
            f"{evaluated_model} already has a different sample {item.index} of prompt {item.prompt.position}; "
            "import under a new model version instead",
        )
        for item in items
        if (item.prompt.id, item.index) in existing
        and existing[item.prompt.id, item.index].settings.get("source_sha256") != item.source_sha256
    ]
    if conflicts:
        raise ImageImportError(source, conflicts)

    new_items = [item for item in items if (item.prompt.id, item.index) not in existing]
    by_id = {p.pk: p for p in prompts}
    stored: list[Sample] = []
    if progress:
        progress("storing", 0, len(new_items))
    try:
        with transaction.atomic():
            for done, item in enumerate(new_items, start=1):
                stored.append(
                    sample_store(
                        evaluated_model=evaluated_model,
                        prompt=by_id[item.prompt.id],
                        index=item.index,
                        seed=None,
                        image=backend.open(item),
                        settings=item.settings,
                    )
                )
                if progress:
                    progress("storing", done, len(new_items))
    except BaseException:
        _orphans_delete({sample.image.name for sample in stored})
        raise
    covered = {item.prompt.id for item in items}
    return ImportReport(
        source=str(source),
        created=len(new_items),
        already_present=len(items) - len(new_items),
        prompts=len(covered),
        prompts_without_samples=[p.position for p in prompts if p.pk not in covered],
    )


def _orphans_delete(names: set[str]) -> None:
    referenced = set(Sample.objects.filter(image__in=names).values_list("image", flat=True))
    for name in names - referenced:
        default_storage.delete(name)


# --- generation runs ------------------------------------------------------------------------------------------


def generation_run_create(
    *,
    evaluated_model: EvaluatedModel,
    prompt_set: PromptSet,
    categories: Sequence[str] = (),
    prompt_ids: Sequence[int] = (),
    samples_per_prompt: int = 8,
    batch_size: int = 4,
) -> GenerationRun:
    """A pending run of ``evaluated_model`` over the prompt set, or some categories / prompts of it."""
    try:
        backend_cls = backend_class(evaluated_model.backend)
        backend_cls(evaluated_model.config)
    except ImproperlyConfigured as exc:
        raise ValidationError({"evaluated_model": f"{evaluated_model}: {exc}"}) from exc
    if not backend_cls.generates:
        raise ValidationError(
            {"evaluated_model": f"{evaluated_model} imports its samples; use `manage.py import_samples`."}
        )
    errors: dict[str, str] = {}
    known = set(prompt_set.prompts.values_list("category", flat=True))
    unknown = sorted(set(categories) - known)
    if unknown:
        errors["categories"] = f"not categories of {prompt_set.slug}: {unknown}; it has {sorted(known)}"
    foreign = sorted(set(prompt_ids) - set(prompt_set.prompts.filter(pk__in=prompt_ids).values_list("pk", flat=True)))
    if foreign:
        errors["prompt_ids"] = f"not prompts of {prompt_set.slug}: {foreign}"
    if samples_per_prompt < 1:
        errors["samples_per_prompt"] = "must be at least 1"
    if batch_size < 1:
        errors["batch_size"] = "must be at least 1"
    if errors:
        raise ValidationError(errors)
    run = GenerationRun(
        evaluated_model=evaluated_model,
        prompt_set=prompt_set,
        categories=sorted(set(categories)),
        prompt_ids=sorted(set(prompt_ids)),
        samples_per_prompt=samples_per_prompt,
        batch_size=batch_size,
    )
    prompt_count = generation_run_prompts(run=run).count()
    if prompt_count == 0:
        raise ValidationError("the run selects no prompts: the categories and prompt ids have none in common")
    run.total = prompt_count * samples_per_prompt
    run.full_clean()
    run.save()
    return run


def _prompts_missing_samples(run: GenerationRun) -> list[int]:
    """Ids of the run's prompts that lack some of their samples, in prompt order."""
    prompts = (
        generation_run_prompts(run=run)
        .annotate(
            present=Count(
                "samples",
                filter=_run_samples_q(run),
            )
        )
        .filter(present__lt=run.samples_per_prompt)
        .order_by("position")
    )
    return list(prompts.values_list("pk", flat=True))


def _run_samples_q(run: GenerationRun) -> Q:
    return Q(samples__evaluated_model_id=run.evaluated_model_id, samples__index__lt=run.samples_per_prompt)


def generation_run_queue(*, run: GenerationRun) -> str:
    """The broker queue of the run's tasks: the one its backend asks for (settings.DRAWBENCH_QUEUES)."""
    try:
        kind = backend_for(run.evaluated_model).queue()
    except ImproperlyConfigured as exc:
        raise ValidationError({"evaluated_model": str(exc)}) from exc
    queues = django_settings.DRAWBENCH_QUEUES
    if kind not in queues:
        raise ValidationError(
            {"evaluated_model": f"{run.evaluated_model}: its backend asks for queue {kind!r}; known: {sorted(queues)}"}
        )
    return kind


def generation_run_start(*, run: GenerationRun) -> GenerationRun:
    """Queue the run's missing samples, one Celery task per batch of prompts, once this transaction commits.

    Starting again resumes: only prompts with missing samples are queued, and prompts that failed are retried. Each
    start is a new attempt: tasks still queued from an earlier one (before a cancel, say) find it stale and do
    nothing, so resuming never has two sets of tasks draw the same images. Tasks go to the queue the model's
    backend asks for ("gpu" or "cpu"), chosen here per task.
    """
    from drawbench.generation.tasks import generate_batch

    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run.pk)
        kind = generation_run_queue(run=run)
        run.failures.all().delete()
        missing = _prompts_missing_samples(run)
        run.started_at = timezone.now()
        run.error = ""
        run.attempt += 1
        run.queue = kind
        if missing:
            run.status = GenerationRun.Status.RUNNING
            run.finished_at = None
        else:
            run.status = GenerationRun.Status.DONE
            run.finished_at = run.started_at
        run.full_clean()
        run.save()
        batches = [missing[i : i + run.batch_size] for i in range(0, len(missing), run.batch_size)]
        run_id, attempt, queue = run.pk, run.attempt, django_settings.DRAWBENCH_QUEUES[kind]

        def enqueue() -> None:
            for batch in batches:
                generate_batch.apply_async(args=(run_id, batch, attempt), queue=queue)

        transaction.on_commit(enqueue)
    return run


def generation_run_resume(*, run: GenerationRun) -> GenerationRun:
    """Start a stopped run again (cancelled, failed or never started): its missing and failed prompts are queued.

    A running run is refused rather than restarted: its tasks are still queued or at work. To restart one whose
    workers are gone, cancel it first.
    """
    run.refresh_from_db(fields=["status"])
    if run.status == GenerationRun.Status.RUNNING:
        raise ValidationError(f"run {run.pk} is running already; cancel it first to restart it")
    return generation_run_start(run=run)


def generation_run_cancel(*, run: GenerationRun) -> GenerationRun:
    """Stop a run: its queued tasks find it cancelled and do nothing; a running task stops after its prompt."""
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run.pk)
        if run.status not in (GenerationRun.Status.PENDING, GenerationRun.Status.RUNNING):
            raise ValidationError(
                f"run {run.pk} is {run.get_status_display().lower()}: only a pending or running run can be cancelled"
            )
        run.status = GenerationRun.Status.CANCELLED
        run.finished_at = timezone.now()
        run.full_clean()
        run.save()
    return run


def _run_is_current(run_id: int, attempt: int | None) -> bool:
    """Still running, and (for a task that knows its attempt) not restarted since the task was queued."""
    runs = GenerationRun.objects.filter(pk=run_id, status=GenerationRun.Status.RUNNING)
    if attempt is not None:
        runs = runs.filter(attempt=attempt)
    return runs.exists()


def generation_failure_record(*, run: GenerationRun, prompt: Prompt, message: str) -> GenerationFailure:
    failure, _ = GenerationFailure.objects.update_or_create(run=run, prompt=prompt, defaults={"message": message})
    return failure


def _blank(image: Image.Image) -> bool:
    """One colour everywhere: what safety filters return in place of an image."""
    return all(low == high for low, high in image.convert("RGB").getextrema())


def generation_batch_run(*, run_id: int, prompt_ids: Sequence[int], attempt: int | None = None) -> int:
    """Generate the missing samples of some prompts of a run; return how many were made.

    What Celery tasks call. Samples already stored are skipped, so a re-executed or resumed batch redoes nothing.
    A batch of an earlier ``attempt`` than the run's, or of a run no longer running, does nothing (it stops after
    its current prompt when that happens mid-batch). A permanent failure of one prompt is recorded against it and
    the batch goes on; ``TransientBackendError`` and database errors propagate for the task to retry.

    The time spent inside the backend (``prepare`` and ``generate``) and in the whole batch are added to the run's
    ``model_seconds`` and ``task_seconds``: what the platform costs on top of the model.
    """
    started = time.perf_counter()
    run = GenerationRun.objects.select_related("evaluated_model", "prompt_set").filter(pk=run_id).first()
    if run is None:
        logger.warning("generation run %s no longer exists; batch skipped", run_id)
        return 0
    if run.status != GenerationRun.Status.RUNNING or (attempt is not None and attempt != run.attempt):
        return 0
    clock = _ModelClock()
    try:
        return _batch_generate(run, prompt_ids, attempt, clock)
    finally:
        GenerationRun.objects.filter(pk=run.pk).update(
            model_seconds=F("model_seconds") + clock.seconds,
            task_seconds=F("task_seconds") + (time.perf_counter() - started),
        )


class _ModelClock:
    """Adds up the seconds spent inside the backend."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._since: float | None = None

    def __enter__(self) -> None:
        self._since = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        self.seconds += time.perf_counter() - self._since


def _batch_generate(run: GenerationRun, prompt_ids: Sequence[int], attempt: int | None, clock: _ModelClock) -> int:
    model = run.evaluated_model
    n = run.samples_per_prompt
    prompts = list(Prompt.objects.filter(pk__in=prompt_ids, prompt_set_id=run.prompt_set_id).order_by("position"))
    present = set(
        Sample.objects.filter(evaluated_model=model, prompt__in=prompts, index__lt=n).values_list("prompt_id", "index")
    )
    todo = [p for p in prompts if any((p.pk, index) not in present for index in range(n))]
    if not todo:
        generation_run_finish_if_complete(run=run)
        return 0
    # Failures recorded by an earlier delivery of this batch; a prompt that now succeeds loses its failure.
    failed_before = set(run.failures.filter(prompt__in=todo).values_list("prompt_id", flat=True))
    try:
        backend = backend_for(model)
        with clock:
            backend.prepare()
    except TransientBackendError:
        raise
    except Exception as exc:
        logger.exception("run %s: backend of %s cannot start", run.pk, model)
        generation_run_fail(run=run, error=f"{model}: the backend cannot start: {type(exc).__name__}: {exc}")
        return 0
    made = 0
    for prompt in todo:
        if not _run_is_current(run.pk, attempt):
            break
        requests = [
            SampleRequest(
                prompt_id=prompt.pk,
                prompt_text=prompt.text,
                prompt_position=prompt.position,
                index=index,
                seed=sample_seed_for(model, prompt, index),
            )
            for index in range(n)
            if (prompt.pk, index) not in present
        ]
        try:
            with clock:
                images = backend.generate(requests)
            if [image.request for image in images] != requests:
                raise BackendError(f"the backend returned {len(images)} image(s) for {len(requests)} request(s)")
            blank = [image.request.index for image in images if _blank(image.image)]
            if blank:
                raise BackendError(f"blank image(s) for sample(s) {blank} (a safety filter?)")
        except TransientBackendError:
            raise
        except Exception as exc:
            # Any other error is this prompt's: record it where the dashboard shows it, and go on.
            logger.exception("run %s: prompt %s failed", run.pk, prompt.position)
            generation_failure_record(run=run, prompt=prompt, message=f"{type(exc).__name__}: {exc}")
            continue
        with transaction.atomic():
            made += generated_samples_store(
                evaluated_model=model, prompt=prompt, images=images, settings=backend.describe()
            )
            if prompt.pk in failed_before:
                GenerationFailure.objects.filter(run=run, prompt=prompt).delete()
    generation_run_finish_if_complete(run=run)
    return made


def generation_run_fail(*, run: GenerationRun, error: str) -> GenerationRun:
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run.pk)
        if run.status == GenerationRun.Status.RUNNING:
            run.status = GenerationRun.Status.FAILED
            run.error = error
            run.finished_at = timezone.now()
            run.full_clean()
            run.save()
    return run


def generation_run_finish_if_complete(*, run: GenerationRun) -> GenerationRun:
    """Mark a running run done when every sample exists, or failed when the only prompts left have failed."""
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run.pk)
        if run.status != GenerationRun.Status.RUNNING:
            return run
        missing = set(_prompts_missing_samples(run))
        failed = set(run.failures.values_list("prompt_id", flat=True))
        if not missing:
            run.status = GenerationRun.Status.DONE
        elif missing <= failed:
            run.status = GenerationRun.Status.FAILED
            run.error = (
                f"{len(missing)} prompt(s) failed; see the failures, fix their cause and start the run again to "
                f"retry them."
            )
        else:
            return run
        run.finished_at = timezone.now()
        run.full_clean()
        run.save()
    return run


IMPORT_BACKEND = "drawbench.backends.imported.ImportBackend"


@transaction.atomic
def samples_import_with_model(
    *, name: str, version: str, prompt_set: PromptSet, source: Path, samples_per_prompt: int
) -> tuple[EvaluatedModel, ImportReport]:
    """Create the imported model ``name@version`` if it is missing and import its samples, in one transaction: an
    import that fails leaves neither samples, nor files, nor a new, empty model row behind."""
    model = imported_model_get_or_create(name=name, version=version)
    report = samples_import(
        evaluated_model=model, prompt_set=prompt_set, source=source, samples_per_prompt=samples_per_prompt
    )
    return model, report


def imported_model_get_or_create(*, name: str, version: str = "1", description: str = "") -> EvaluatedModel:
    """The evaluated model ``name@version`` whose samples are imported, created if it does not exist yet."""
    model = EvaluatedModel.objects.filter(name=name, version=version).first()
    if model is not None:
        return model
    model = EvaluatedModel(name=name, version=version, backend=IMPORT_BACKEND, description=description)
    model.full_clean()
    model.save()
    return model
