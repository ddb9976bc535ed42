"""factory_boy factories that keep related rows consistent (a comparison's sides share its prompt)."""

import hashlib
import io

import factory
from django.core.files.base import ContentFile
from django.db.models import F
from PIL import Image

from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample
from drawbench.studies.models import (
    Assignment,
    Comparison,
    Judgment,
    JudgmentExclusion,
    Question,
    Rater,
    Study,
)


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


class PromptSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PromptSet

    slug = factory.Sequence(lambda n: f"set-{n}")
    title = factory.Sequence(lambda n: f"Prompt set {n}")


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    prompt_set = factory.SubFactory(PromptSetFactory)
    position = factory.Sequence(lambda n: n + 1)
    text = factory.Sequence(lambda n: f"A red cube number {n}.")
    category = "Colors"


class EvaluatedModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EvaluatedModel

    name = factory.Sequence(lambda n: f"model-{n}")
    version = "1"
    backend = "drawbench.backends.imported.ImportBackend"


class SampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sample

    evaluated_model = factory.SubFactory(EvaluatedModelFactory)
    prompt = factory.SubFactory(PromptFactory)
    index = factory.Sequence(lambda n: n % 8)
    seed = factory.Sequence(lambda n: n)
    width = 16
    height = 16

    @factory.lazy_attribute
    def image(self):
        data = png_bytes(color=(self.index * 20 % 256, 40, 90))
        return ContentFile(data, name=f"{hashlib.sha256(data).hexdigest()}.png")

    @factory.lazy_attribute
    def content_hash(self):
        return hashlib.sha256(self.image.read()).hexdigest()


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study

    name = factory.Sequence(lambda n: f"Study {n}")
    prompt_set = factory.SubFactory(PromptSetFactory)
    questions = factory.LazyFunction(lambda: [Question.FIDELITY.value, Question.ALIGNMENT.value])


class ComparisonFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Comparison

    study = factory.SubFactory(StudyFactory)
    prompt = factory.SubFactory(PromptFactory, prompt_set=factory.SelfAttribute("..study.prompt_set"))
    model_a = factory.SubFactory(EvaluatedModelFactory)
    model_b = factory.SubFactory(EvaluatedModelFactory)

    @factory.post_generation
    def counted(obj, create, extracted, **kwargs):
        """Count it on its study, as services.study_create does for the comparisons it makes."""
        if create:
            Study.objects.filter(pk=obj.study_id).update(n_comparisons=F("n_comparisons") + 1)
            obj.study.n_comparisons += 1


class RaterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rater

    study = factory.SubFactory(StudyFactory)


class AssignmentFactory(factory.django.DjangoModelFactory):
    """A comparison served to a rater of the same study; model A shown on the left unless told otherwise."""

    class Meta:
        model = Assignment

    comparison = factory.SubFactory(ComparisonFactory)
    rater = factory.SubFactory(RaterFactory, study=factory.SelfAttribute("..comparison.study"))
    left_model = factory.SelfAttribute("comparison.model_a")
    left_sample_ids = factory.LazyFunction(list)
    right_sample_ids = factory.LazyFunction(list)


class JudgmentFactory(factory.django.DjangoModelFactory):
    """A judgment whose rater, comparison and displayed sides are those of its assignment."""

    class Meta:
        model = Judgment

    assignment = factory.SubFactory(AssignmentFactory)
    comparison = factory.SelfAttribute("assignment.comparison")
    rater = factory.SelfAttribute("assignment.rater")
    question = Question.FIDELITY.value
    choice = "A"
    left_model = factory.SelfAttribute("assignment.left_model")
    left_sample_ids = factory.SelfAttribute("assignment.left_sample_ids")
    right_sample_ids = factory.SelfAttribute("assignment.right_sample_ids")
    response_time_ms = 1500


class JudgmentExclusionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JudgmentExclusion

    judgment = factory.SubFactory(JudgmentFactory)
    reason = "flagged in a test"
