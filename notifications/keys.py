"""Every notification's idempotency key, in one place.

A key names one message for good: the outbox holds one row per key, so a night run twice, or
re-run after a crash, queues nothing twice (README, Guarantees). The formats below are those
the outbox already holds, so a case queued before this module existed is still recognised;
change one and every message of that kind would be sent again. Keys carry references, codes
and dates only, never a child's data.
"""

from __future__ import annotations

from datetime import date

__all__ = [
    "acknowledgement",
    "acknowledgement_reminder",
    "delivery_failing",
    "half_termly_update",
    "inter_la",
    "missing_information",
    "not_cme",
    "pmooe_attendance",
    "resolution",
    "safeguarding",
]


def acknowledgement(reference: str) -> str:
    """The school's acknowledgement of referral ``reference``."""
    return f"ack:{reference}"


def not_cme(reference: str) -> str:
    """The signposting letter for a referral that is not CME."""
    return f"not_cme:{reference}"


def missing_information(reference: str) -> str:
    """The letter asking the school for the enquiries it has not made."""
    return f"missing:{reference}"


def resolution(reference: str, outcome: str) -> str:
    """The school's letter for the case's ``outcome`` (one per outcome)."""
    return f"resolution:{reference}:{outcome}"


def inter_la(reference: str, la_code: str) -> str:
    """The notice to LA ``la_code`` about the case."""
    return f"inter_la:{reference}:{la_code}"


def safeguarding(reference: str, raised_by: str) -> str:
    """The duty inbox's safeguarding task; ``raised_by`` is ``school`` or an agency's name.

    The school's concern keeps intake's key, so it gets one task however it arrives."""
    return f"safeguarding:{reference}:" + ("intake" if raised_by == "school"
                                            else f"agency:{raised_by}")


def pmooe_attendance(reference: str) -> str:
    """The school's letter when register marks show a pupil missing (PMOOE)."""
    return f"pmooe_att:{reference}"


def half_termly_update(school_urn: str, term_id: str) -> str:
    """A school's half-termly update for term ``term_id``."""
    return f"half_termly:{school_urn}:{term_id}"


def acknowledgement_reminder(reference: str) -> str:
    """The duty inbox's reminder that an acknowledgement is overdue."""
    return f"ack_reminder:{reference}"


def delivery_failing(channel: str, day: date) -> str:
    """The duty inbox's alert that ``channel`` keeps failing (one a London day)."""
    return f"delivery-failing:{channel}:{day.isoformat()}"
