"""Gold trials: control items made from the study's own samples (identical sets, another prompt's set, a degraded
copy), each with the answer a careful rater gives."""

import random

from django.db import transaction

from drawbench.catalog.models import Sample
from drawbench.studies import quality
from drawbench.studies.models import (
    GoldTrial,
    Study,
)
from drawbench.studies.selectors import (
    study_prompts,
)
from drawbench.studies.services.display import DisplaySet
from drawbench.studies.services.serving import display_rng

# Gold trials made per kind when a study opens (fewer when the study has fewer prompts).
GOLD_TRIALS_PER_KIND = 4


@transaction.atomic
def gold_trials_prepare(
    *, study: Study, rng: random.Random | None = None, display: DisplaySet | None = None
) -> list[GoldTrial]:
    """Make the study's gold trials from its own samples, once (the ones already made are returned as they are).

    Up to GOLD_TRIALS_PER_KIND of each kind, on distinct prompts, each from one model chosen at random: identical
    sets; the caption's set against the same model's set for a prompt of another category (of another prompt when
    there is one category); the caption's set against blurred, noised copies of it. Every image of a gold set is a
    display image of its own (services.display), made like the study's others: in `display` when the study is
    opening (the caller saves it), else in a set of their own, padded to the study's length.
    """
    existing = list(study.gold_trials.all())
    if existing:
        return existing
    rng = rng or display_rng()
    own_display = display is None
    display = display or DisplaySet(study)
    k = study.samples_per_side
    models = list(study.evaluated_models.order_by("pk").values_list("pk", flat=True))
    prompts = list(study_prompts(study=study).only("id", "category"))
    names: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for model_id, prompt_id, sample_id, name in (
        Sample.objects.filter(evaluated_model_id__in=models, prompt__in=prompts)
        .order_by("evaluated_model", "prompt", "index")
        .values_list("evaluated_model_id", "prompt_id", "id", "image")
    ):
        names.setdefault((model_id, prompt_id), []).append((sample_id, name))

    def copies(sources: list[tuple[int, str]]) -> list[str]:
        return [display.add_stored(name, made_from_id=sample_id) for sample_id, name in sources]

    trials = []
    for kind in (GoldTrial.Kind.DEGRADED, GoldTrial.Kind.MISMATCH, GoldTrial.Kind.IDENTICAL):
        for prompt in rng.sample(prompts, min(GOLD_TRIALS_PER_KIND, len(prompts))):
            model_id = rng.choice(models)
            available = names.get((model_id, prompt.pk), [])
            if len(available) < k:
                continue
            sources = rng.sample(available, k)
            if kind == GoldTrial.Kind.IDENTICAL:
                foil = copies(sources)
            elif kind == GoldTrial.Kind.DEGRADED:
                foil = [
                    display.add_pixels(
                        quality.degraded_copy(display.pixels_of(name), seed=rng.getrandbits(32)), made_from_id=sample_id
                    )
                    for sample_id, name in sources
                ]
            else:
                others = [p for p in prompts if p.pk != prompt.pk and len(names.get((model_id, p.pk), [])) >= k]
                if not others:
                    continue
                other = rng.choice([p for p in others if p.category != prompt.category] or others)
                foil = copies(rng.sample(names[(model_id, other.pk)], k))
            trial = GoldTrial(study=study, kind=kind, prompt=prompt, reference_images=copies(sources), foil_images=foil)
            trial.full_clean(exclude=["study", "prompt"])
            trials.append(trial)
    if own_display:
        display.save()
    return GoldTrial.objects.bulk_create(trials)
