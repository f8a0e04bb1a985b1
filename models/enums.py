"""Enumerations stored in the case tables (as strings, so SQLite and PostgreSQL agree)."""

from __future__ import annotations

from enum import StrEnum

from policy import CaseOutcome, CaseStatus, CheckOutcome

__all__ = [
    "CaseOutcome",
    "CaseStatus",
    "CheckOutcome",
    "ClosureReason",
    "NotificationChannel",
    "NotificationStatus",
    "ReferralKind",
    "Template",
]


class ReferralKind(StrEnum):
    """What the school referred: a child missing education or a pupil missing out on it."""

    CME = "CME"
    PMOOE = "PMOOE"


class ClosureReason(StrEnum):
    """Why an officer closed a case (chosen in the ``close-case`` flow)."""

    on_roll_elsewhere = "on_roll_elsewhere"
    transferred_to_other_la = "transferred_to_other_la"
    left_uk = "left_uk"
    returned_to_school = "returned_to_school"
    elective_home_education = "elective_home_education"
    deleted_from_roll_whereabouts_unknown = "deleted_from_roll_whereabouts_unknown"
    not_cme = "not_cme"
    duplicate = "duplicate"
    other = "other"


class NotificationChannel(StrEnum):
    file = "file"
    smtp = "smtp"
    notify = "notify"


class NotificationStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"


class Template(StrEnum):
    """Message templates; the text lives in ``notifications/``."""

    acknowledgement = "acknowledgement"
    acknowledgement_reminder = "acknowledgement_reminder"
    missing_school_actions = "missing_school_actions"
    not_cme_signpost = "not_cme_signpost"
    resolution = "resolution"
    half_termly_update = "half_termly_update"
    inter_la = "inter_la"
    safeguarding_task = "safeguarding_task"
    pmooe_attendance = "pmooe_attendance"
    delivery_failing = "delivery_failing"
