"""``manage.py import_samples``: samples made elsewhere, from a folder or a manifest CSV, all or nothing.

Numbering: a folder holds ``<root>/<prompt position>/<k>.png``, where the prompt position is the prompt's 1-based
position in its prompt set (the first prompt of the file loaded by ``load_prompts`` is ``1/``) and the image index
``k`` is 0-based: ``0.png`` to ``<n-1>.png`` for ``--samples-per-prompt n``. A manifest's ``index`` column is 0-based
too; without it a prompt's rows are numbered 0, 1, ... in file order. ``--samples-per-prompt`` is required: every
prompt the source covers must have exactly that many images.
"""

import argparse
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

NUMBERING = (
    "Numbering: prompt folders are the prompts' 1-based positions in the prompt set (the first prompt is 1/), "
    "images are 0-based: 0.png to <n-1>.png for --samples-per-prompt n (.jpg, .jpeg and .webp too). A manifest's "
    "optional index column is 0-based as well; without it a prompt's rows are numbered 0, 1, ... in file order."
)


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Import a model's samples from a folder <root>/<prompt position>/<k>.png or a manifest CSV "
        "(prompt,image[,index], image paths relative to the manifest). " + NUMBERING + " Everything is validated "
        "first; on any problem nothing is imported and each problem is listed once, with the places it was found."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="NAME or NAME@VERSION of the evaluated model.")
        parser.add_argument("--prompt-set", required=True, help="Slug of the prompt set the samples belong to.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--folder", type=Path, help="Folder <root>/<prompt position, from 1>/<k, from 0>.png, e.g. 1/0.png"
        )
        source.add_argument("--manifest", type=Path, help="CSV with columns prompt,image[,index] (index from 0)")
        parser.add_argument(
            "--samples-per-prompt",
            type=positive_int,
            required=True,
            metavar="N",
            help="Images per prompt (required): each prompt folder holds 0.png to <N-1>.png.",
        )
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
