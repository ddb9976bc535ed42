"""Forms of the researcher dashboard. Validation of the study itself lives in studies.services.study_create."""

from django import forms

from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.studies.models import DEFAULT_MAX_COMPARISONS_PER_RATER, Question, Study


def _help(field: str) -> str:
    return str(Study._meta.get_field(field).help_text)


class StudyCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    prompt_set = forms.ModelChoiceField(queryset=PromptSet.objects.order_by("slug"))
    categories = forms.CharField(
        required=False,
        help_text="Comma-separated category names; empty for every category of the prompt set.",
    )
    evaluated_models = forms.ModelMultipleChoiceField(
        queryset=EvaluatedModel.objects.all(), widget=forms.CheckboxSelectMultiple, help_text="Two or more."
    )
    questions = forms.MultipleChoiceField(
        choices=Question.choices,
        initial=[Question.FIDELITY, Question.ALIGNMENT],
        widget=forms.CheckboxSelectMultiple,
    )
    samples_per_side = forms.IntegerField(min_value=1, max_value=16, initial=8)
    ratings_per_comparison = forms.IntegerField(min_value=1, max_value=1000, initial=25)
    max_comparisons_per_rater = forms.IntegerField(
        min_value=1, required=False, initial=DEFAULT_MAX_COMPARISONS_PER_RATER,
        help_text="Comparisons a rater gets at most (empty: every comparison).",
    )  # fmt: skip
    instructions = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    # Rater operations: quality control, consent and the way back to the crowd platform. Each may be left empty for
    # the default (the DrawBench protocol has no quality control: none is on unless asked for).
    consent_text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, help_text=_help("consent_text")
    )
    practice_items = forms.IntegerField(
        min_value=0, max_value=20, required=False, help_text=_help("practice_items") + " Default 0."
    )
    gold_rate = forms.FloatField(
        min_value=0, max_value=1, required=False, help_text=_help("gold_rate") + " From 0 to 1; default 0 (none)."
    )
    min_gold_accuracy = forms.FloatField(
        min_value=0, max_value=1, required=False, help_text=_help("min_gold_accuracy") + " Default 0.8."
    )
    min_response_time_ms = forms.IntegerField(
        min_value=0, required=False, help_text=_help("min_response_time_ms") + " In ms; default 1000."
    )
    assignment_timeout_s = forms.IntegerField(
        min_value=1, required=False, help_text=_help("assignment_timeout_s") + " In seconds; default 1800."
    )
    completion_code = forms.CharField(
        max_length=64, required=False, help_text="Shown to a rater who finished. Empty: a random 8-character code."
    )
    min_answers_for_code = forms.IntegerField(
        min_value=0, max_value=10_000, required=False, help_text=_help("min_answers_for_code") + " Default 1."
    )
    completion_url = forms.URLField(
        max_length=500, required=False, assume_scheme="https", help_text=_help("completion_url")
    )

    DEFAULTED = (
        "practice_items", "gold_rate", "min_gold_accuracy", "min_response_time_ms", "assignment_timeout_s",
        "completion_code", "min_answers_for_code",
    )  # fmt: skip

    def clean_categories(self) -> list[str]:
        raw = self.cleaned_data["categories"]
        return [c.strip() for c in raw.split(",") if c.strip()]

    def clean(self):
        cleaned = super().clean()
        # Left empty: study_create's default.
        for name in self.DEFAULTED:
            if cleaned.get(name) in (None, ""):
                cleaned.pop(name, None)
        return cleaned
