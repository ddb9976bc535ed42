"""``manage.py import_samples``: samples made elsewhere, from a folder or a manifest CSV, all or nothing."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from drawbench.backends.imported import ImageImportError
from drawbench.generation.management.commands._options import (
    evaluated_model_from_label,
    parse_model_label,
    prompt_set_from_slug,
)
from drawbench.generation.services import samples_import, samples_import_with_model


class Command(BaseCommand):
    help = (
        "Import a model's samples from a folder <root>/<prompt position>/<k>.png or a manifest CSV "
        "(prompt,image[,index], image paths relative to the manifest). Everything is validated first; "
        "on any problem nothing is imported and every problem is listed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="NAME or NAME@VERSION of the evaluated model.")
        parser.add_argument("--prompt-set", required=True, help="Slug of the prompt set the samples belong to.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--folder", type=Path, help="Folder <root>/<prompt position>/<k>.png")
        source.add_argument("--manifest", type=Path, help="CSV with columns prompt,image[,index]")
        parser.add_argument("--samples-per-prompt", type=int, default=8)
        parser.add_argument(
            "--create-model", action="store_true", help="Create the model (version 1 unless given) if it is missing."
        )

    def handle(self, *args, **options):
        prompt_set = prompt_set_from_slug(options["prompt_set"])
        source = options["folder"] or options["manifest"]
        n = options["samples_per_prompt"]
        try:
            if options["create_model"]:
                # The model row is created in the import's transaction: a failed import leaves no empty model behind.
                name, version = parse_model_label(options["model"])
                _, report = samples_import_with_model(
                    name=name, version=version or "1", prompt_set=prompt_set, source=source, samples_per_prompt=n
                )
            else:
                model = evaluated_model_from_label(options["model"])
                report = samples_import(
                    evaluated_model=model, prompt_set=prompt_set, source=source, samples_per_prompt=n
                )
        except ImageImportError as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError(f"Cannot import into {options['model']!r}: {'; '.join(exc.messages)}") from exc
        self.stdout.write(self.style.SUCCESS(str(report)))
