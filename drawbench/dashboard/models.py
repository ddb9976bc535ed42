"""The dashboard's own rows: sample imports uploaded on its page, run by a worker, followed by the page."""

from django.conf import settings
from django.db import models

from drawbench.catalog.models import EvaluatedModel, PromptSet


class SampleImportJob(models.Model):
    """One uploaded zip (and manifest) to import into a model's samples of a prompt set, in a Celery task.

    The upload waits in default storage (``archive_file``, ``manifest_file``) until the task has run; ``phase``,
    ``done`` and ``total`` say how far it has got; ``report`` holds what was imported, ``problems`` what was wrong
    (one line per problem, as ``import_samples`` prints them).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    evaluated_model = models.ForeignKey(EvaluatedModel, on_delete=models.CASCADE, related_name="+")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="+")
    samples_per_prompt = models.PositiveSmallIntegerField()
    archive_name = models.CharField(max_length=200, help_text="The uploaded zip's name.")
    manifest_name = models.CharField(max_length=200, blank=True, help_text="The uploaded manifest's name, if any.")
    archive_file = models.CharField(max_length=300, blank=True, help_text="Storage name of the upload until run.")
    manifest_file = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    phase = models.CharField(max_length=32, blank=True, help_text="extracting, checking or storing")
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    problems = models.JSONField(default=list, blank=True)
    problem_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"import {self.pk}: {self.archive_name} into {self.evaluated_model}"
