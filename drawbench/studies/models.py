"""Studies, their comparisons, raters, what each rater was shown (assignments) and their judgments.

Judgments are stored in model space (A, B or tie, where A is the comparison's model_a), together with what was
displayed. They are immutable: no update, no delete; excluding one is a JudgmentExclusion row.

Quality control lives beside them and never in them: gold trials (control items with a known answer) are served
as assignments of their own kind and answered into ControlAnswer rows, and a rater's inattention is a RaterFlag.
Neither changes or removes a judgment; results are computed with and without flagged raters.
"""

import secrets
import string

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from drawbench.catalog.models import EvaluatedModel, Prompt, PromptSet, Sample

# A token never starts with these: "-" would make a spreadsheet read a rater's id in an export as a formula (the CSV
# export then writes it with a leading quote, and it no longer joins with the API's or the platform's copy), and "_"
# is kept out with it so that every token starts with a letter or a digit.
TOKEN_FIRST_EXCLUDED = "-_"


def url_token(nbytes: int = 32) -> str:
    """An unguessable URL-safe token of ``nbytes`` random bytes that starts with a letter or a digit (redrawn, about
    1 time in 32, when it does not: under 0.05 bits of the 8·nbytes are lost)."""
    while True:
        token = secrets.token_urlsafe(nbytes)
        if token[0] not in TOKEN_FIRST_EXCLUDED:
            return token


def new_token() -> str:
    """An unguessable URL token: 32 bytes (256 bits) of randomness, starting with a letter or a digit."""
    return url_token(32)


COMPLETION_CODE_ALPHABET = string.ascii_uppercase + string.digits


def new_completion_code() -> str:
    """A completion code of the kind crowd platforms show (8 characters, about 41 bits): per study, not a secret."""
    return "".join(secrets.choice(COMPLETION_CODE_ALPHABET) for _ in range(8))


class Question(models.TextChoices):
    FIDELITY = "fidelity", "Which set of images is of higher quality?"
    ALIGNMENT = "alignment", "Which set of images better represents the text caption?"


class Choice(models.TextChoices):
    A = "A", "Model A"
    TIE = "tie", "Indifferent"
    B = "B", "Model B"


class DisplayedChoice(models.TextChoices):
    """What a rater picks on screen, before conversion to model space."""

    LEFT = "left", "I prefer set A"
    TIE = "tie", "I am indifferent"
    RIGHT = "right", "I prefer set B"


# A crowd rater's session: 50 comparisons at about 20 s each is a quarter of an hour (DrawBench's 200 would be more
# than an hour, and a rater would need them all for a completion code).
DEFAULT_MAX_COMPARISONS_PER_RATER = 50


class DisplayFormat(models.TextChoices):
    JPEG = "jpeg", "JPEG"
    PNG = "png", "PNG"


class Study(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        GENERATING = "generating", "Generating"
        OPEN = "open", "Open for rating"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=200)
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="studies")
    categories = models.JSONField(default=list, blank=True, help_text="Empty: every category of the prompt set.")
    evaluated_models = models.ManyToManyField(EvaluatedModel, related_name="studies")
    questions = models.JSONField(default=list, help_text="Question values, in the order they are asked.")
    samples_per_side = models.PositiveSmallIntegerField(default=8)
    ratings_per_comparison = models.PositiveSmallIntegerField(default=25)
    max_comparisons_per_rater = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=DEFAULT_MAX_COMPARISONS_PER_RATER,
        help_text="Comparisons a rater gets at most (a crowd session of reasonable length). Empty: every comparison.",
    )
    instructions = models.TextField(blank=True)
    consent_text = models.TextField(
        blank=True, help_text="Shown before the instructions; when set, a rater must agree to it before starting."
    )
    practice_items = models.PositiveSmallIntegerField(
        default=0, help_text="Labelled practice items (control items, never counted) before the first comparison."
    )
    gold_rate = models.FloatField(
        default=0.0, help_text="Chance that the next item is a silent gold trial (a control with a known answer)."
    )
    min_gold_accuracy = models.FloatField(
        default=0.8, help_text="A rater who answers fewer gold questions correctly than this is flagged."
    )
    min_response_time_ms = models.PositiveIntegerField(
        default=1000, help_text="Answers faster than this count as too fast (the rater is flagged, nothing refused)."
    )
    assignment_timeout_s = models.PositiveIntegerField(
        default=30 * 60, help_text="A comparison served and not answered for this long goes back to the pool."
    )
    completion_code = models.CharField(
        max_length=64, blank=True, default=new_completion_code, help_text="Shown to a rater who finished."
    )
    min_answers_for_code = models.PositiveSmallIntegerField(
        default=1, help_text="A rater gets the completion code only after answering at least this many items."
    )
    display_size = models.PositiveSmallIntegerField(
        default=512, help_text="Every image is shown at this size (pixels, square), whatever its model made."
    )
    display_format = models.CharField(
        max_length=8,
        choices=DisplayFormat.choices,
        default=DisplayFormat.JPEG,
        help_text="Every image is re-encoded in this format when the study opens.",
    )
    completion_url = models.URLField(
        max_length=500, blank=True, help_text="Where a rater who finished is sent (e.g. the crowd platform's)."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # Set when the study is created (its comparisons never change afterwards): every rater request needs it for the
    # progress bar, and counting the rows each time cost more than the rest of the statement.
    n_comparisons = models.PositiveIntegerField(default=0, editable=False)
    rater_token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(samples_per_side__gte=1), name="study_samples_per_side_positive"),
            models.CheckConstraint(condition=Q(ratings_per_comparison__gte=1), name="study_ratings_positive"),
            models.CheckConstraint(condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="study_gold_rate_range"),
            models.CheckConstraint(
                condition=Q(min_gold_accuracy__gte=0) & Q(min_gold_accuracy__lte=1), name="study_gold_accuracy_range"
            ),
            models.CheckConstraint(condition=Q(assignment_timeout_s__gte=1), name="study_assignment_timeout_positive"),
            models.CheckConstraint(
                condition=Q(display_size__gte=16) & Q(display_size__lte=2048), name="study_display_size_range"
            ),
        ]
        permissions = [("view_results", "Can view results and export judgments")]

    def __str__(self) -> str:
        return self.name


class Comparison(models.Model):
    """One prompt, two models. Both sides' samples are of this one prompt by construction."""

    # No index of its own: comparison_open_slots and comparison_unique lead with it, and every index costs each
    # claim (a claim's update of n_assigned writes an entry in each).
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="comparisons", db_index=False)
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="comparisons")
    model_a = models.ForeignKey(EvaluatedModel, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(EvaluatedModel, on_delete=models.PROTECT, related_name="+")
    # Raters holding or having answered it (its live and completed assignments): the counter that assignment takes
    # a slot from atomically, so that no comparison is given to more than ratings_per_comparison raters.
    n_assigned = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["study", "prompt__position", "model_a", "model_b"]
        constraints = [
            models.CheckConstraint(condition=~Q(model_a=F("model_b")), name="comparison_models_differ"),
            models.UniqueConstraint(fields=["study", "prompt", "model_a", "model_b"], name="comparison_unique"),
            models.CheckConstraint(condition=Q(n_assigned__gte=0), name="comparison_n_assigned_not_negative"),
        ]
        indexes = [models.Index(fields=["study", "n_assigned"], name="comparison_open_slots")]

    def __str__(self) -> str:
        return f"study {self.study_id}: prompt {self.prompt_id}, {self.model_a_id} vs {self.model_b_id}"


class Rater(models.Model):
    class Platform(models.TextChoices):
        ANONYMOUS = "anonymous", "Anonymous (study link)"
        PROLIFIC = "prolific", "Prolific"
        MTURK = "mturk", "Amazon Mechanical Turk"
        EXTERNAL = "external", "Other (external id)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="raters")
    # Exported with judgments (rater_id): an identifier, not a credential.
    public_id = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    # The rater's API credential (Authorization: Rater <token>); never exported or shown to anyone else.
    access_token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.ANONYMOUS)
    external_id = models.CharField(max_length=200, blank=True, help_text="Crowd platform id, if any.")
    platform_study_id = models.CharField(max_length=200, blank=True, help_text="Prolific STUDY_ID, MTurk hitId.")
    platform_session_id = models.CharField(
        max_length=200, blank=True, help_text="Prolific SESSION_ID, MTurk assignmentId."
    )
    consented_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True, help_text="First reached the finish page.")
    completed_at = models.DateTimeField(null=True, blank=True, help_text="Had nothing left to rate.")
    last_answered_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Server time of their last answer (when the next item showed)."
    )
    # Items answered, practice aside: raised by the answer path with each answer it records (the progress bar reads
    # it on every answer; counting the rows instead grew with every answer).
    n_answered = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        constraints = [
            # The same crowd worker coming back is the same rater.
            models.UniqueConstraint(
                fields=["study", "platform", "external_id"],
                condition=~Q(external_id=""),
                name="rater_unique_external_id",
            ),
        ]

    def __str__(self) -> str:
        return f"rater {self.pk} of study {self.study_id}"


class GoldTrial(models.Model):
    """A control item with a known answer, built from the study's own samples when it opens.

    identical: one set twice (in two orders) → indifferent on every question. mismatch: the caption's set against a
    set made for another prompt → the caption's set on alignment. degraded: a set against a blurred, noised copy of
    itself → the clean set on fidelity. `reference_images` is the set the expected answer points at; images are
    storage names, content-hash named like samples, so that nothing a rater sees tells a control from a comparison.
    """

    class Kind(models.TextChoices):
        IDENTICAL = "identical", "Identical sets"
        MISMATCH = "mismatch", "A set made for another prompt"
        DEGRADED = "degraded", "A degraded copy"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="gold_trials")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="+", help_text="Its caption.")
    reference_images = models.JSONField(help_text="Storage names of the set the expected answer prefers.")
    foil_images = models.JSONField(help_text="Storage names of the other set.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "id"]

    def __str__(self) -> str:
        return f"gold trial {self.pk} ({self.kind}) of study {self.study_id}"

    def expected(self, question: str, *, reference_on_left: bool) -> str | None:
        """The displayed answer a careful rater gives to `question`, or None when any answer is acceptable."""
        if self.kind == self.Kind.IDENTICAL:
            return DisplayedChoice.TIE
        if (self.kind, question) in ((self.Kind.MISMATCH, Question.ALIGNMENT), (self.Kind.DEGRADED, Question.FIDELITY)):
            return DisplayedChoice.LEFT if reference_on_left else DisplayedChoice.RIGHT
        return None


class Assignment(models.Model):
    """One item served to one rater, with what was displayed.

    A comparison (kind "comparison"): the side of each model and the image order; answered into Judgments. A gold
    trial, silent ("gold") or labelled as practice ("practice"): which side its reference set is on and the image
    order; answered into ControlAnswers. `key` is the item's unguessable id and the idempotency key of its answer.
    """

    class Kind(models.TextChoices):
        COMPARISON = "comparison", "Comparison"
        GOLD = "gold", "Gold trial (silent)"
        PRACTICE = "practice", "Practice item"

    # No index of its own: the unique (rater, comparison) index leads with it. A second one made the planner probe
    # "has this rater seen this comparison" through all of a rater's rows whenever its statistics were stale.
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.COMPARISON)
    comparison = models.ForeignKey(
        Comparison, null=True, blank=True, on_delete=models.PROTECT, related_name="assignments"
    )
    # No index of its own either: nothing looks assignments up by gold trial or by model except deleting one (rare,
    # and PROTECT refuses it anyway), while every index costs each write of a row on the answer path.
    gold_trial = models.ForeignKey(
        GoldTrial, null=True, blank=True, on_delete=models.PROTECT, related_name="assignments", db_index=False
    )
    # Unique by a constraint (below) rather than unique=True, which on PostgreSQL adds a second index for LIKE
    # queries that nothing runs.
    key = models.CharField(max_length=64, default=new_token, editable=False)
    left_model = models.ForeignKey(
        EvaluatedModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    left_sample_ids = models.JSONField(default=list, blank=True, help_text="Sample ids in displayed order, left set.")
    right_sample_ids = models.JSONField(default=list, blank=True, help_text="Sample ids in displayed order, right set.")
    reference_on_left = models.BooleanField(null=True, blank=True, help_text="Gold trials: where the reference was.")
    left_images = models.JSONField(default=list, blank=True, help_text="Gold trials: storage names, left set.")
    right_images = models.JSONField(default=list, blank=True, help_text="Gold trials: storage names, right set.")
    served_at = models.DateTimeField(auto_now_add=True)
    shown_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Server time the item was first shown (the later of serving and the rater's "
        "previous answer); answered_at - shown_at is the server's response time.",
    )
    holds_slot = models.BooleanField(
        db_default=True,
        default=True,
        help_text="False: a rater's first item, which takes its comparison's slot only when answered.",
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Unanswered by then, it may be reclaimed.")
    released_at = models.DateTimeField(null=True, blank=True, help_text="When it was reclaimed for other raters.")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rater", "comparison"], name="assignment_unique_rater_comparison"),
            models.UniqueConstraint(fields=["key"], name="assignment_unique_key"),
            # Partial: comparison rows (gold_trial empty, never in conflict) stay out of the index.
            models.UniqueConstraint(
                fields=["rater", "gold_trial"],
                condition=Q(gold_trial__isnull=False),
                name="assignment_unique_rater_gold_trial",
            ),
            models.CheckConstraint(
                condition=(
                    Q(kind="comparison", comparison__isnull=False, left_model__isnull=False, gold_trial__isnull=True)
                    | Q(kind__in=["gold", "practice"], gold_trial__isnull=False, comparison__isnull=True)
                ),
                name="assignment_kind_matches_its_item",
            ),
        ]
        indexes = [
            # The sweep for abandoned assignments reads only live comparison assignments, oldest lease first.
            models.Index(
                fields=["expires_at"],
                condition=Q(kind="comparison", completed_at__isnull=True, released_at__isnull=True),
                name="assignment_live_by_expiry",
            ),
            # A rater's items served and not answered yet, in the order they are shown: a few rows per rater, read
            # on every answer.
            models.Index(
                fields=["rater", "served_at", "id"],
                condition=Q(completed_at__isnull=True, released_at__isnull=True),
                name="assignment_pending_by_rater",
            ),
        ]

    @property
    def is_control(self) -> bool:
        return self.kind != self.Kind.COMPARISON


class JudgmentQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Judgments are immutable: record an exclusion instead of updating.")

    def delete(self):
        raise TypeError("Judgments are immutable and are never deleted.")


class Judgment(models.Model):
    """One rater's answer to one question on one comparison, in model space."""

    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="judgments")
    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="judgments")
    # No index of its own: judgment_unique_answer leads with it (each index costs every answer two entries).
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="judgments", db_index=False)
    question = models.CharField(max_length=16, choices=Question.choices)
    choice = models.CharField(max_length=3, choices=Choice.choices)
    left_model = models.ForeignKey(EvaluatedModel, on_delete=models.PROTECT, related_name="+")
    left_sample_ids = models.JSONField()
    right_sample_ids = models.JSONField()
    response_time_ms = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = JudgmentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rater", "comparison", "question"], name="judgment_unique_answer"),
            models.CheckConstraint(condition=Q(choice__in=["A", "B", "tie"]), name="judgment_choice_valid"),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Judgments are immutable: record an exclusion instead of updating.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Judgments are immutable and are never deleted.")


class ControlAnswerQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("Answers to control items are immutable.")

    def delete(self):
        raise TypeError("Answers to control items are immutable and are never deleted.")


class ControlAnswer(models.Model):
    """A rater's answer to one question of a gold trial or practice item, as displayed, and whether it was right.

    Never a Judgment: control items say nothing about the models and never enter results.
    """

    assignment = models.ForeignKey(Assignment, on_delete=models.PROTECT, related_name="control_answers")
    rater = models.ForeignKey(Rater, on_delete=models.PROTECT, related_name="control_answers")
    gold_trial = models.ForeignKey(GoldTrial, on_delete=models.PROTECT, related_name="answers")
    practice = models.BooleanField(default=False)
    question = models.CharField(max_length=16, choices=Question.choices)
    choice = models.CharField(max_length=5, choices=DisplayedChoice.choices)
    expected = models.CharField(max_length=5, choices=DisplayedChoice.choices, blank=True)
    correct = models.BooleanField(null=True, blank=True, help_text="Empty when any answer was acceptable.")
    response_time_ms = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ControlAnswerQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "question"], name="control_answer_unique_question"),
        ]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("Answers to control items are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Answers to control items are immutable and are never deleted.")


class RaterFlag(models.Model):
    """Why a rater looks inattentive. A flag removes nothing: results can leave flagged raters out, or not.

    Flags are derived from the rater's answers and the study's thresholds (services.rater_flags_refresh), so a flag
    whose condition no longer holds is withdrawn.
    """

    class Reason(models.TextChoices):
        FAILED_GOLD = "failed_gold", "Failed gold trials"
        ALWAYS_LEFT = "always_left", "Always chose the left set"
        ALWAYS_RIGHT = "always_right", "Always chose the right set"
        ALWAYS_TIE = "always_tie", "Always indifferent"
        TOO_FAST = "too_fast", "Answered faster than the response-time floor"

    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="flags")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rater", "reason"]
        constraints = [models.UniqueConstraint(fields=["rater", "reason"], name="rater_flag_unique_reason")]

    def __str__(self) -> str:
        return f"{self.rater}: {self.get_reason_display()}"


class JudgmentExclusion(models.Model):
    """A flag that leaves a judgment out of results; the judgment itself stays."""

    judgment = models.OneToOneField(Judgment, on_delete=models.PROTECT, related_name="exclusion")
    reason = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)


class DisplayImage(models.Model):
    """An image as raters receive it: re-encoded to the study's display size and format when the study opens, under
    an opaque random name of the study's own (a sample shown in two studies has two names). Gold sets (degraded
    copies, another prompt's set, identical sets) are display images made the same way at the same time: nothing a
    rater's browser receives but the pixels tells a model or a gold trial apart."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="display_images", db_index=False)
    name = models.CharField(max_length=32, unique=True)
    sample = models.ForeignKey(Sample, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    made_from = models.ForeignKey(
        Sample,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Gold sets: the sample the image was made from (a copy, or a degraded copy). Never sent to raters.",
    )
    file = models.CharField(max_length=255, help_text="Storage name of the re-encoded file.")

    class Meta:
        constraints = [
            # Not partial: gold copies have no sample (NULLs never collide), and reading a study's names by study
            # and sample id (sql.study_display_names) needs an index the planner takes without proving NOT NULL.
            models.UniqueConstraint(fields=["study", "sample"], name="displayimage_unique_study_sample"),
        ]

    def __str__(self) -> str:
        return self.name
