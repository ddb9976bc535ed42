"""Forms of the dashboard's catalog pages. They check the request's shape; the services check the rest (a model's
config against its backend, a prompt file as ``load_prompts csv`` does, a sample source as ``import_samples`` does)."""

import json
from pathlib import Path

from django import forms

from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.dashboard.catalog_selectors import KNOWN_BACKENDS, backend_is_generated
from drawbench.dashboard.catalog_services import PROMPT_FILE_SUFFIXES, evaluated_model_config_errors

MAX_SAMPLES_PER_PROMPT = 64


class JsonObjectField(forms.CharField):
    """A JSON object typed into a textarea; a syntax error says its line and column."""

    widget = forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"})

    def prepare_value(self, value):
        if isinstance(value, dict):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value):
        text = super().to_python(value).strip()
        if not text:
            return {}
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
        if not isinstance(parsed, dict):
            raise forms.ValidationError(f"the config must be a JSON object {{...}}, not a JSON {type(parsed).__name__}")
        return parsed


class EvaluatedModelForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="Letters, digits, dashes and underscores.")
    version = forms.CharField(max_length=50, initial="1")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    backend = forms.CharField(
        max_length=200,
        initial="drawbench.backends.diffusers_backend.DiffusersBackend",
        widget=forms.TextInput(attrs={"list": "known-backends", "class": "wide"}),
        help_text="Dotted path of a SampleBackend subclass; the known ones are listed below.",
    )
    config = JsonObjectField(required=False, help_text="A JSON object, checked against the backend's keys.")

    def __init__(self, *args, instance: EvaluatedModel | None = None, **kwargs):
        self.instance = instance
        if instance is not None:
            kwargs.setdefault(
                "initial",
                {name: getattr(instance, name) for name in ("name", "version", "description", "backend", "config")},
            )
        super().__init__(*args, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if "backend" in cleaned and "config" in cleaned:
            for field, message in evaluated_model_config_errors(
                backend=cleaned["backend"], config=cleaned["config"]
            ).items():
                self.add_error(field, message)
        return cleaned


def _suffix_validator(suffixes: tuple[str, ...], what: str):
    def check(upload) -> None:
        suffix = Path(upload.name or "").suffix.lower()
        if suffix not in suffixes:
            raise forms.ValidationError(f"{upload.name}: expected {what}, not {suffix or 'a file without extension'}")

    return check


class PromptSetUploadForm(forms.Form):
    file = forms.FileField(
        validators=[_suffix_validator(PROMPT_FILE_SUFFIXES, "a .csv, .tsv, .jsonl or .ndjson file")],
        help_text="CSV/TSV with columns prompt, category and an optional id (other columns are kept as metadata), "
        'or JSONL with one {"prompt": ..., "category": ..., "id": ...} per line.',
    )
    slug = forms.SlugField(max_length=64, help_text="The prompt set's short name. An existing slug is updated.")
    title = forms.CharField(max_length=200, required=False, help_text="Default: the slug.")


class SampleImportForm(forms.Form):
    evaluated_model = forms.ModelChoiceField(
        queryset=EvaluatedModel.objects.order_by("name", "version"),
        help_text="A model with the imported backend (create one on the Models page).",
    )
    prompt_set = forms.ModelChoiceField(queryset=PromptSet.objects.order_by("slug"))
    samples_per_prompt = forms.IntegerField(
        min_value=1,
        max_value=MAX_SAMPLES_PER_PROMPT,
        help_text="Images per prompt: every prompt folder holds exactly 0.png to <n-1>.png.",
    )
    archive = forms.FileField(
        validators=[_suffix_validator((".zip",), "a .zip archive")],
        help_text="A zip of the folder <prompt position>/<k>.png (positions from 1, images from 0), "
        "or the images a manifest names.",
    )
    manifest = forms.FileField(
        required=False,
        validators=[_suffix_validator((".csv",), "a .csv manifest")],
        help_text="Optional: a CSV prompt,image[,index] (index from 0); image paths are relative to the zip's root.",
    )

    def clean_evaluated_model(self):
        model = self.cleaned_data["evaluated_model"]
        if backend_is_generated(model.backend):
            raise forms.ValidationError(
                f"{model} is generated by its backend ({model.backend}); import samples into a model with the "
                "imported backend, or start a generation run"
            )
        return model


class GenerationRunStartForm(forms.Form):
    evaluated_model = forms.ModelChoiceField(queryset=EvaluatedModel.objects.order_by("name", "version"))
    prompt_set = forms.ModelChoiceField(queryset=PromptSet.objects.order_by("slug"))
    categories = forms.CharField(
        required=False, help_text="Comma-separated category names; empty for every category of the prompt set."
    )
    samples_per_prompt = forms.IntegerField(min_value=1, max_value=MAX_SAMPLES_PER_PROMPT, initial=8)
    batch_size = forms.IntegerField(min_value=1, max_value=256, initial=4, help_text="Prompts per worker task.")

    def clean_categories(self) -> list[str]:
        return [c.strip() for c in self.cleaned_data["categories"].split(",") if c.strip()]


def known_backend_choices() -> list[tuple[str, str]]:
    return list(KNOWN_BACKENDS.items())
