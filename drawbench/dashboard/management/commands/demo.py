"""The main job in one command: migrate, load DrawBench, make a demo study between two generated models, serve it.

The two models: imagen_core's shipped toy checkpoint (a 32x32 Imagen base model trained on a toy world of coloured
shapes, imagen_core/assets/toy_base.safetensors) against a diffusers baseline, the offline tiny Stable Diffusion
twin (untrained, 64x64). Both run on the CPU with nothing downloaded.

Runs on the embedded default (SQLite, Celery's file-system broker): this command starts a real Celery worker as a
child process, so generation runs as Celery tasks with nothing to install or start by hand.
"""

import os
import secrets
import subprocess
import time

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from tqdm import tqdm

from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.catalog.services import prompt_set_import
from drawbench.dashboard.selectors import study_samples_state
from drawbench.dashboard.services import study_generation_start
from drawbench.generation.worker import worker_process
from drawbench.studies.models import Study
from drawbench.studies.services.studies import study_create, study_open
from prompts import LoadedPromptSet, PromptRecord

DEMO_SET_SLUG = "drawbench-demo"
DEMO_STUDY_NAME = "Demo: imagen_core toy model vs tiny Stable Diffusion on DrawBench"
DEMO_INSTRUCTIONS = (
    "This is a demo. Both models are tiny: one learned to draw coloured shapes on a toy world, the other is untrained "
    "and draws abstract patterns. Neither can draw most DrawBench captions. Answer as you would in a real study."
)
# The demo's models are built from configs and shipped files: nothing to fetch, nothing to warn about.
DEMO_WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
DIFFUSERS_BACKEND = "drawbench.backends.diffusers_backend.DiffusersBackend"
IMAGEN_BACKEND = "drawbench.backends.imagen_backend.ImagenBackend"
# The toy checkpoint samples with 50 DDIM steps by default; 25 draw the same shapes in half the time on a CPU.
IMAGEN_TOY_CONFIG = {"checkpoint": "imagen_core:toy_base", "device": "cpu", "steps": 25, "threads": 1}


class Command(BaseCommand):
    help = (
        "Set up a demo DrawBench study (imagen_core's toy checkpoint against a tiny diffusers baseline, both offline) "
        "and serve it, printing the rater and admin links."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--prompts-per-category", type=int, default=2)
        parser.add_argument("--samples-per-side", type=int, default=8)
        parser.add_argument("--no-serve", action="store_true", help="Set everything up, then exit.")
        parser.add_argument("--timeout", type=float, default=1800, help="Seconds to wait for generation.")

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("Loading DrawBench prompts …")
        call_command("load_prompts", "drawbench", stdout=self.stdout)
        password = self._staff_account()
        study = self._study(options["prompts_per_category"], options["samples_per_side"])

        with worker_process(env=DEMO_WORKER_ENV, loglevel="ERROR", quiet=True, stop_timeout=20) as worker:
            self._generate(study, worker=worker, timeout=options["timeout"])
            if study.status != Study.Status.OPEN:
                study = study_open(study=study)
            base = f"http://{options['host']}:{options['port']}"
            self.stdout.write(self.style.SUCCESS("\nThe demo study is ready."))
            self.stdout.write(f"  Rater link:  {base}/s/{study.rater_token}/")
            self.stdout.write(
                f"  Dashboard:   {base}/dashboard/studies/{study.pk}/   (user 'admin', password {password})"
            )
            self.stdout.write(f"  Results:     {base}/dashboard/studies/{study.pk}/results/")
            self.stdout.write(f"  Admin:       {base}/admin/")
            self.stdout.write(
                "The models are tiny: imagen_core's toy model draws coloured shapes, the untrained diffusers baseline "
                "abstract colour fields, by design.\n"
            )
            if not options["no_serve"]:
                call_command("runserver", f"{options['host']}:{options['port']}", use_reloader=False)

    def _staff_account(self) -> str:
        password = os.environ.get("DRAWBENCH_DEMO_PASSWORD") or secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    @transaction.atomic
    def _study(self, per_category: int, samples_per_side: int) -> Study:
        existing = Study.objects.filter(name=DEMO_STUDY_NAME).first()
        if existing is not None:
            return existing
        demo_set = _demo_prompt_set(per_category)
        models = [_imagen_toy_model(), _tiny_sd_model()]
        return study_create(
            name=DEMO_STUDY_NAME,
            prompt_set=demo_set,
            evaluated_models=models,
            samples_per_side=samples_per_side,
            ratings_per_comparison=3,
            instructions=DEMO_INSTRUCTIONS,
        )

    def _generate(self, study: Study, *, worker: subprocess.Popen, timeout: float) -> None:
        state = study_samples_state(study=study)
        needed = sum(s["needed"] for s in state)
        if sum(s["present"] for s in state) < needed:
            study_generation_start(study=study)
        deadline = time.monotonic() + timeout
        with tqdm(total=needed, desc="Generating samples", unit="img") as bar:
            while True:
                present = sum(s["present"] for s in study_samples_state(study=study))
                bar.update(present - bar.n)
                if present >= needed:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"The Celery worker exited with code {worker.returncode}; see its output above.")
                if time.monotonic() > deadline:
                    raise SystemExit(f"Generation did not finish in {timeout:.0f} s ({present}/{needed} samples).")
                time.sleep(1)
        study.refresh_from_db()


def _demo_prompt_set(per_category: int) -> PromptSet:
    """The first `per_category` prompts of each DrawBench category, as their own prompt set."""
    drawbench = PromptSet.objects.get(slug="drawbench")
    taken: dict[str, int] = {}
    records = []
    for prompt in drawbench.prompts.order_by("position"):
        if taken.get(prompt.category, 0) < per_category:
            taken[prompt.category] = taken.get(prompt.category, 0) + 1
            records.append(prompt)
    loaded = LoadedPromptSet(
        slug=DEMO_SET_SLUG,
        title=f"DrawBench demo subset ({per_category} per category)",
        source=f"prompt set '{drawbench.slug}'",
        records=tuple(
            PromptRecord(position=i, text=p.text, category=p.category) for i, p in enumerate(records, start=1)
        ),
        category_descriptions=drawbench.category_descriptions,
    )
    prompt_set_import(loaded=loaded)
    return PromptSet.objects.get(slug=DEMO_SET_SLUG)


def _imagen_toy_model() -> EvaluatedModel:
    model, _ = EvaluatedModel.objects.get_or_create(
        name="imagen-toy",
        version="1",
        defaults={
            "backend": IMAGEN_BACKEND,
            "config": IMAGEN_TOY_CONFIG,
            "description": "imagen_core's shipped toy checkpoint: a 32x32 Imagen base model trained on toy shapes.",
        },
    )
    return model


def _tiny_sd_model() -> EvaluatedModel:
    from drawbench.backends.diffusers_backend import tiny_model_config

    model, _ = EvaluatedModel.objects.get_or_create(
        name="tiny-sd",
        version="1",
        defaults={
            "backend": DIFFUSERS_BACKEND,
            "config": tiny_model_config(init_seed=1),
            "description": "diffusers baseline: the offline tiny Stable Diffusion twin (untrained), 64x64.",
        },
    )
    return model
