"""Dashboard actions that span apps: starting a study's generation."""

from django.db import transaction

from drawbench.backends.base import backend_class
from drawbench.catalog.models import EvaluatedModel
from drawbench.generation.models import GenerationRun
from drawbench.generation.services import generation_run_create, generation_run_start
from drawbench.studies.models import Study
from drawbench.studies.services.studies import study_mark_generating


def model_is_generated(model: EvaluatedModel) -> bool:
    """Imported models (samples made elsewhere) have nothing to generate."""
    return backend_class(model.backend).generates


@transaction.atomic
def study_generation_start(*, study: Study) -> list[GenerationRun]:
    """Start one generation run per generated model of the study, over the study's prompts."""
    prompt_ids = sorted(set(study.comparisons.values_list("prompt_id", flat=True)))
    runs = []
    for model in study.evaluated_models.all():
        if not model_is_generated(model):
            continue
        run = generation_run_create(
            evaluated_model=model,
            prompt_set=study.prompt_set,
            prompt_ids=prompt_ids,
            samples_per_prompt=study.samples_per_side,
        )
        generation_run_start(run=run)
        runs.append(run)
    study_mark_generating(study=study)
    return runs
