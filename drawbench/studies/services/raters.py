"""Raters: joining a study (anonymously or with a crowd id), consent, finishing, and quality flags."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from drawbench.studies import quality
from drawbench.studies.models import (
    Rater,
    RaterFlag,
    Study,
)
from drawbench.studies.platforms import PlatformIdentity, session_parameter
from drawbench.studies.selectors import (
    rater_answer_stats,
)
from drawbench.studies.services.errors import (
    ERROR_CONSENT_REQUIRED,
    ERROR_OTHER_SESSION,
    ERROR_STUDY_NOT_OPEN,
    OtherSession,
    StudyNotOpen,
)

# --- raters -----------------------------------------------------------------------------------------------------


@transaction.atomic
def rater_create(
    *,
    study: Study,
    external_id: str = "",
    platform: str = Rater.Platform.ANONYMOUS,
    platform_study_id: str = "",
    platform_session_id: str = "",
    consent: bool = False,
) -> Rater:
    """A new rater of an open study (the Start button of the study link). A study with consent text needs `consent`."""
    study = Study.objects.get(pk=study.pk)
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen(ERROR_STUDY_NOT_OPEN)
    if study.consent_text and not consent:
        raise ValidationError({"consent": ERROR_CONSENT_REQUIRED})
    if external_id and platform == Rater.Platform.ANONYMOUS:
        platform = Rater.Platform.EXTERNAL
    rater = Rater(
        study=study,
        platform=platform,
        external_id=external_id,
        platform_study_id=platform_study_id,
        platform_session_id=platform_session_id,
        consented_at=timezone.now() if consent else None,
    )
    rater.full_clean(exclude=["study"], validate_constraints=False)
    rater.save()
    return rater


def rater_returning(*, study: Study, identity: PlatformIdentity | None) -> Rater | None:
    """The rater this crowd identity already is in the study, or None (a new visitor, or no crowd id).

    A crowd id is not a secret (it shows in links, screenshots, a platform's messages): the platform's session id of
    the visit must be the one the rater started with, when one was recorded (Prolific's SESSION_ID, MTurk's
    assignmentId), else OtherSession. The browser a rater started in keeps them without it (its session holds them).
    """
    if identity is None or not identity.external_id:
        return None
    returning = Rater.objects.filter(study=study, platform=identity.platform, external_id=identity.external_id).first()
    if returning is not None and returning.platform_session_id not in ("", identity.platform_session_id):
        raise OtherSession(
            ERROR_OTHER_SESSION.format(
                platform=returning.get_platform_display(), parameter=session_parameter(identity.platform)
            ),
            code="other_session",
        )
    return returning


def rater_join(*, study: Study, identity: PlatformIdentity | None = None, consent: bool = False) -> Rater:
    """The rater a visitor of the study link is: the same one again for a crowd id seen before (from the same
    platform session: see rater_returning), else a new one."""
    returning = rater_returning(study=study, identity=identity)
    if returning is not None:
        return rater_consent(rater=returning, consent=consent)
    kwargs = {}
    if identity is not None:
        kwargs = {
            "platform": identity.platform,
            "external_id": identity.external_id,
            "platform_study_id": identity.platform_study_id,
            "platform_session_id": identity.platform_session_id,
        }
    try:
        return rater_create(study=study, consent=consent, **kwargs)
    except IntegrityError:
        # The same crowd id started twice at once (two tabs): the one that got in first is the rater.
        return Rater.objects.get(study=study, platform=kwargs["platform"], external_id=kwargs["external_id"])


def rater_consent(*, rater: Rater, consent: bool) -> Rater:
    """A rater coming back: record their consent if the study asks for it and they had not given it yet."""
    if rater.study.consent_text and rater.consented_at is None:
        if not consent:
            raise ValidationError({"consent": ERROR_CONSENT_REQUIRED})
        rater.consented_at = timezone.now()
        rater.save(update_fields=["consented_at"])
    return rater


@transaction.atomic
def rater_finish(*, rater: Rater) -> Rater:
    """Record when a rater reached the finish page; the first time counts."""
    if rater.finished_at is None:
        rater.finished_at = timezone.now()
        rater.full_clean(exclude=["study"], validate_constraints=False)
        rater.save(update_fields=["finished_at"])
    return rater


def rater_complete(*, rater: Rater) -> Rater:
    """Record that a rater had nothing left to rate (they get the completion code) and refresh their flags."""
    with transaction.atomic():
        if rater.completed_at is None:
            rater.completed_at = timezone.now()
            rater.save(update_fields=["completed_at"])
        rater_finish(rater=rater)
    rater_flags_refresh(study=rater.study, rater_ids=[rater.pk])
    return rater


@transaction.atomic
def rater_flags_refresh(*, study: Study, rater_ids: list[int] | None = None) -> dict[int, dict[str, str]]:
    """Flag the study's raters (or those of `rater_ids`) by their answers; withdraw flags that no longer hold.

    Returns {rater id: {reason: detail}} for every rater considered. Judgments are not touched.
    """
    if rater_ids is None:
        rater_ids = list(Rater.objects.filter(study=study).values_list("pk", flat=True))
    stats = rater_answer_stats(study=study, rater_ids=rater_ids)
    wanted = {
        rater_id: quality.rater_flag_reasons(
            stats.get(rater_id, quality.RaterAnswerStats()),
            min_gold_accuracy=study.min_gold_accuracy,
            min_response_time_ms=study.min_response_time_ms,
        )
        for rater_id in rater_ids
    }
    stale, changed = [], []
    held = set()
    for flag in RaterFlag.objects.filter(rater_id__in=rater_ids):
        detail = wanted[flag.rater_id].get(flag.reason)
        if detail is None:
            stale.append(flag.pk)
            continue
        held.add((flag.rater_id, flag.reason))
        if flag.detail != detail:
            flag.detail = detail
            changed.append(flag)
    RaterFlag.objects.filter(pk__in=stale).delete()
    RaterFlag.objects.bulk_update(changed, ["detail"])
    RaterFlag.objects.bulk_create(
        [
            RaterFlag(rater_id=rater_id, reason=reason, detail=detail)
            for rater_id, reasons in wanted.items()
            for reason, detail in reasons.items()
            if (rater_id, reason) not in held
        ],
        ignore_conflicts=True,
    )
    return wanted
