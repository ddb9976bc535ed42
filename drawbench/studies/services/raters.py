"""Raters: joining a study (anonymously or with a crowd id), consent, finishing, and quality flags."""

from collections.abc import Collection

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


# Why a known crowd id is not resumed (each names what is missing; {parameter} is the platform's session parameter
# as the caller names it: SESSION_ID or assignmentId in a link, platform_session_id in the API).
ERROR_RESUME_SESSION_MISSING = (
    "This {platform} id has already started this study. It can be continued only in the browser it started in, "
    "or with the {parameter} it started with, and none was given."
)
ERROR_RESUME_SESSIONLESS = (
    "This {platform} id has already started this study, without a {parameter}: it can be continued only in the "
    "browser it started in. Please go back to that browser."
)


def rater_returning(
    *,
    study: Study,
    identity: PlatformIdentity | None,
    known_rater_ids: Collection[int] = (),
    session_field: str | None = None,
) -> Rater | None:
    """The rater this crowd identity already is in the study, or None (a new visitor, or no crowd id).

    A crowd id is not a secret (it shows in links, screenshots, a platform's messages; Prolific ids are visible to
    other researchers): knowing it resumes nobody. The rater is resumed from the browser it started in (its id in
    `known_rater_ids`: the browser's session or signed cookie), or with the platform's session id it started with
    (Prolific's SESSION_ID, MTurk's assignmentId), else OtherSession naming what is missing. An id that started
    without a session id is resumed only from its browser. `session_field` names the session parameter in the
    caller's terms (the API's platform_session_id); the platform's link parameter by default.
    """
    if identity is None or not identity.external_id:
        return None
    returning = Rater.objects.filter(study=study, platform=identity.platform, external_id=identity.external_id).first()
    if returning is None or returning.pk in known_rater_ids:
        return returning
    recorded = returning.platform_session_id
    if recorded and recorded == identity.platform_session_id:
        return returning
    parameter = session_field or session_parameter(identity.platform)
    platform = returning.get_platform_display()
    if not recorded:
        message, code = ERROR_RESUME_SESSIONLESS.format(platform=platform, parameter=parameter), "sessionless"
    elif not identity.platform_session_id:
        message, code = ERROR_RESUME_SESSION_MISSING.format(platform=platform, parameter=parameter), "session_missing"
    else:
        message, code = ERROR_OTHER_SESSION.format(platform=platform, parameter=parameter), "other_session"
    raise OtherSession(message, code=code)


def rater_join(
    *,
    study: Study,
    identity: PlatformIdentity | None = None,
    consent: bool = False,
    known_rater_ids: Collection[int] = (),
    session_field: str | None = None,
) -> Rater:
    """The rater a visitor of the study link is: the same one again for a crowd id seen before (from its browser or
    its platform session: see rater_returning), else a new one."""
    returning_kwargs = {"study": study, "identity": identity, "known_rater_ids": known_rater_ids}
    returning = rater_returning(**returning_kwargs, session_field=session_field)
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
        # The same crowd id started twice at once (two tabs): the one that got in first is the rater, for a visitor
        # who may resume it.
        returning = rater_returning(**returning_kwargs, session_field=session_field)
        if returning is None:
            raise
        return rater_consent(rater=returning, consent=consent)


def rater_consent(*, rater: Rater, consent: bool) -> Rater:
    """A rater coming back: record their consent if the study asks for it and they had not given it yet."""
    if rater.study.consent_text and rater.consented_at is None:
        if not consent:
            raise ValidationError({"consent": ERROR_CONSENT_REQUIRED})
        rater.consented_at = timezone.now()
        rater.save(update_fields=["consented_at"])
    return rater


def rater_finish(*, rater: Rater) -> Rater:
    """Record when a rater ended their work (finished, or stopped early); the first time counts."""
    now = timezone.now()
    if Rater.objects.filter(pk=rater.pk, finished_at__isnull=True).update(finished_at=now):
        rater.finished_at = now
    else:
        rater.refresh_from_db(fields=["finished_at"])
    return rater


def rater_complete(*, rater: Rater) -> Rater:
    """Record that a rater had nothing left to rate (their work is over: see selectors.rater_completion for what
    they get) and refresh their flags. Only a POST calls this: a GET that finds nothing left only reads."""
    now = timezone.now()
    with transaction.atomic():
        if Rater.objects.filter(pk=rater.pk, completed_at__isnull=True).update(completed_at=now):
            rater.completed_at = now
        else:
            rater.refresh_from_db(fields=["completed_at"])
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
