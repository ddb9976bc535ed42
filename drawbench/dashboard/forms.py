"""Forms of the researcher dashboard. Validation of the study itself lives in studies.services.study_create; the form
turns the page's checkboxes into its arguments and says which field each problem belongs to."""

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count

from drawbench.backends.base import backend_class
from drawbench.catalog.models import EvaluatedModel, PromptSet
from drawbench.dashboard.selectors import prompt_set_category_groups
from drawbench.studies.models import DEFAULT_MAX_COMPARISONS_PER_RATER, Question, Study

ERROR_CATEGORY_OTHER_SET = "Category “{category}” belongs to prompt set {other}, not to the chosen prompt set {chosen}."
ERROR_CATEGORY_NOT_IN_SET = "Category “{category}” is not a category of prompt set {chosen}; it has: {known}."
ERROR_CATEGORY_NO_SET = "Choose a prompt set first: its categories are the ones to choose from."


def _help(field: str) -> str:
    return str(Study._meta.get_field(field).help_text)


def model_kind(model: EvaluatedModel) -> str:
    """How a model gets its samples, as the form shows it beside the model's name."""
    try:
        generates = backend_class(model.backend).generates
    except ImproperlyConfigured:
        return "backend cannot be loaded"
    return "generates its samples" if generates else "imported samples only"


class PromptSetChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: PromptSet) -> str:
        return f"{obj} ({obj.n_prompts} prompts)"


class EvaluatedModelsField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: EvaluatedModel) -> str:
        return f"{obj} · {model_kind(obj)}"


class CategoriesField(forms.MultipleChoiceField):
    """Checked categories, each "<prompt set id>:<category>" (a bare name is read against the chosen prompt set).

    Which values are valid depends on the chosen prompt set, so StudyCreateForm.clean checks them."""

    widget = forms.CheckboxSelectMultiple

    def to_python(self, value) -> list[str]:
        return [str(v) for v in (value or []) if str(v).strip()]

    def valid_value(self, value) -> bool:
        return True


class StudyCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="Shown to raters above the comparisons. Empty: the paper's wording.",
    )
    prompt_set = PromptSetChoiceField(
        queryset=PromptSet.objects.annotate(n_prompts=Count("prompts")).order_by("slug"), empty_label="— choose —"
    )
    categories = CategoriesField(
        required=False, help_text="None checked: every category of the prompt set. The count is its prompts."
    )
    evaluated_models = EvaluatedModelsField(
        queryset=EvaluatedModel.objects.order_by("name", "version"),
        widget=forms.CheckboxSelectMultiple,
        help_text="Two or more. Every pair of them is compared on every prompt.",
    )
    questions = forms.MultipleChoiceField(
        choices=Question.choices,
        initial=[Question.FIDELITY, Question.ALIGNMENT],
        widget=forms.CheckboxSelectMultiple,
    )
    samples_per_side = forms.IntegerField(
        min_value=1,
        max_value=16,
        initial=8,
        help_text="Images per model shown side by side (the paper: 8). A model with imported samples needs this "
        "many of every prompt already; a generated one draws them.",
    )
    ratings_per_comparison = forms.IntegerField(
        min_value=1, max_value=1000, initial=25, help_text="Raters wanted per comparison and question."
    )
    max_comparisons_per_rater = forms.IntegerField(
        min_value=1, required=False, initial=DEFAULT_MAX_COMPARISONS_PER_RATER,
        help_text="Comparisons a rater gets at most (empty: every comparison).",
    )  # fmt: skip
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

    SECTIONS = (
        ("Study", ("name", "instructions")),
        ("Models and prompts", ("prompt_set", "categories", "evaluated_models", "samples_per_side")),
        ("Questions", ("questions", "ratings_per_comparison", "max_comparisons_per_rater")),
    )
    RATER_OPERATIONS = (
        "consent_text", "practice_items", "gold_rate", "min_gold_accuracy", "min_response_time_ms",
        "assignment_timeout_s", "completion_code", "min_answers_for_code", "completion_url",
    )  # fmt: skip
    DEFAULTED = (
        "practice_items", "gold_rate", "min_gold_accuracy", "min_response_time_ms", "assignment_timeout_s",
        "completion_code", "min_answers_for_code",
    )  # fmt: skip

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        checked = set(self.data.getlist("categories")) if self.is_bound and hasattr(self.data, "getlist") else set()
        self.category_groups = prompt_set_category_groups(checked=checked)
        self.fields["categories"].choices = [
            (c["value"], f"{c['name']} ({c['n']})") for group in self.category_groups for c in group["categories"]
        ]
        if not self.is_bound and len(self.category_groups) == 1:
            self.initial.setdefault("prompt_set", self.category_groups[0]["prompt_set"].pk)

    def sections(self) -> list[dict]:
        """The fields, grouped as the page shows them (the rater operations fold away)."""
        return [{"title": title, "fields": [self[name] for name in names]} for title, names in self.SECTIONS]

    def rater_operations(self) -> list:
        return [self[name] for name in self.RATER_OPERATIONS]

    def fields_with_errors(self) -> list:
        return [field for field in self if field.errors]

    def rater_operations_have_errors(self) -> bool:
        return any(self[name].errors for name in self.RATER_OPERATIONS)

    def clean(self):
        cleaned = super().clean()
        # Left empty: study_create's default.
        for name in self.DEFAULTED:
            if cleaned.get(name) in (None, ""):
                cleaned.pop(name, None)
        if "categories" in cleaned:
            cleaned["categories"] = self._clean_categories(cleaned["categories"], cleaned.get("prompt_set"))
        return cleaned

    def _clean_categories(self, values: list[str], prompt_set: PromptSet | None) -> list[str]:
        """Category names of the chosen prompt set; a checked category of another set, or an unknown one, is an error
        naming it (and its set)."""
        if not values:
            return []
        if prompt_set is None:
            if "prompt_set" not in self.errors:
                self.add_error("categories", ERROR_CATEGORY_NO_SET)
            return []
        groups = {group["prompt_set"].pk: group for group in self.category_groups}
        known = [c["name"] for c in groups.get(prompt_set.pk, {"categories": []})["categories"]]
        names, problems = [], []
        for value in values:
            set_id, separator, name = value.partition(":")
            if not (separator and set_id.isdigit()):
                set_id, name = str(prompt_set.pk), value
            if int(set_id) != prompt_set.pk:
                other = groups[int(set_id)]["prompt_set"] if int(set_id) in groups else f"#{set_id}"
                problems.append(ERROR_CATEGORY_OTHER_SET.format(category=name, other=other, chosen=prompt_set))
            elif name not in known:
                problems.append(
                    ERROR_CATEGORY_NOT_IN_SET.format(category=name, chosen=prompt_set, known=", ".join(known) or "none")
                )
            elif name not in names:
                names.append(name)
        for problem in problems:
            self.add_error("categories", problem)
        return names


class CrowdPayForm(forms.Form):
    """The study page's pay question: what a rater's session costs at this hourly pay."""

    hourly_pay = forms.DecimalField(
        min_value=0, max_value=1000, decimal_places=2, required=False, label="Hourly pay",
        help_text="What you pay raters per hour (Prolific asks for at least its minimum).",
    )  # fmt: skip

    def clean_hourly_pay(self):
        value = self.cleaned_data["hourly_pay"]
        return None if value is None else float(value)
