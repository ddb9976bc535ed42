"""Gold trials: control items made from the study's own samples (identical sets, another prompt's set, a degraded
copy), each with the answer a careful rater gives."""

import hashlib
import io
import posixpath
import random

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from drawbench.catalog.models import Sample
from drawbench.studies import quality
from drawbench.studies.models import (
    GoldTrial,
    Study,
)
from drawbench.studies.selectors import (
    study_prompts,
)
from drawbench.studies.services.serving import display_rng

# Gold trials made per kind when a study opens (fewer when the study has fewer prompts).
GOLD_TRIALS_PER_KIND = 4

# --- gold trials ------------------------------------------------------------------------------------------------


def _png_without_metadata(image: Image.Image) -> bytes:
    """PNG bytes of the pixels only: an image rebuilt from raw pixels has no text chunks, EXIF or ICC to copy."""
    rgb = image.convert("RGB")
    bare = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    buffer = io.BytesIO()
    bare.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_store_beside(*, source_name: str, image: Image.Image) -> str:
    """Store `image` content-hash named in the folder of the sample it was made from, so that its URL looks like any
    sample's; identical bytes share one file. Returns the storage name."""
    data = _png_without_metadata(image)
    name = posixpath.join(posixpath.dirname(source_name), f"{hashlib.sha256(data).hexdigest()}.png")
    if not default_storage.exists(name):
        saved = default_storage.save(name, ContentFile(data))
        if saved != name:
            # Another writer stored the same bytes in between; storage kept a second copy under a suffixed name.
            default_storage.delete(saved)
    return name


def _degraded_store(*, sample_name: str, seed: int) -> str:
    with default_storage.open(sample_name, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return _image_store_beside(source_name=sample_name, image=quality.degraded_copy(image, seed=seed))


@transaction.atomic
def gold_trials_prepare(*, study: Study, rng: random.Random | None = None) -> list[GoldTrial]:
    """Make the study's gold trials from its own samples, once (the ones already made are returned as they are).

    Up to GOLD_TRIALS_PER_KIND of each kind, on distinct prompts, each from one model chosen at random: identical
    sets; the caption's set against the same model's set for a prompt of another category (of another prompt when
    there is one category); the caption's set against blurred, noised copies of it, stored like samples.
    """
    existing = list(study.gold_trials.all())
    if existing:
        return existing
    rng = rng or display_rng()
    k = study.samples_per_side
    models = list(study.evaluated_models.order_by("pk").values_list("pk", flat=True))
    prompts = list(study_prompts(study=study).only("id", "category"))
    names: dict[tuple[int, int], list[str]] = {}
    for model_id, prompt_id, name in (
        Sample.objects.filter(evaluated_model_id__in=models, prompt__in=prompts)
        .order_by("evaluated_model", "prompt", "index")
        .values_list("evaluated_model_id", "prompt_id", "image")
    ):
        names.setdefault((model_id, prompt_id), []).append(name)

    trials = []
    for kind in (GoldTrial.Kind.DEGRADED, GoldTrial.Kind.MISMATCH, GoldTrial.Kind.IDENTICAL):
        for prompt in rng.sample(prompts, min(GOLD_TRIALS_PER_KIND, len(prompts))):
            model_id = rng.choice(models)
            available = names.get((model_id, prompt.pk), [])
            if len(available) < k:
                continue
            reference = rng.sample(available, k)
            if kind == GoldTrial.Kind.IDENTICAL:
                foil = list(reference)
            elif kind == GoldTrial.Kind.DEGRADED:
                foil = [_degraded_store(sample_name=name, seed=rng.getrandbits(32)) for name in reference]
            else:
                others = [p for p in prompts if p.pk != prompt.pk and len(names.get((model_id, p.pk), [])) >= k]
                if not others:
                    continue
                other = rng.choice([p for p in others if p.category != prompt.category] or others)
                foil = rng.sample(names[(model_id, other.pk)], k)
            trial = GoldTrial(study=study, kind=kind, prompt=prompt, reference_images=reference, foil_images=foil)
            trial.full_clean(exclude=["study", "prompt"])
            trials.append(trial)
    return GoldTrial.objects.bulk_create(trials)
