"""Synthetic Mendix referral records for the intake tests (synthetic people only).

Imported by name: ``from tests.referral_records import referral_record``.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["CHILD", "CHILD_WITH_UPN_AND_ADDRESS", "SCHOOL", "referral_record"]

SCHOOL: dict[str, Any] = {"urn": "116000", "name": "Test Primary", "la_code": "850",
                          "email": "office@school.example.org"}
CHILD: dict[str, Any] = {"forename": "Zebedee", "surname": "Quillfeather", "dob": "2015-02-28"}
CHILD_WITH_UPN_AND_ADDRESS: dict[str, Any] = {
    "upn": "H801200001001", **CHILD,
    "address": {"line1": "1 Synthetic Row", "town": "Winchester", "postcode": "SO23 8UJ"},
}
#: The four actions the guidance asks of a school before it refers, all done.
_ALL_ACTIONS = ("phone_parents", "email_letter_or_visit", "contact_other_schools", "ask_peers")


def referral_record(reference: str, *, received_at: str = "2026-11-23T10:00:00+00:00",
                    child: dict[str, Any] = CHILD, **extra: Any) -> dict[str, Any]:
    """A CME referral from Test Primary that intake accepts: not on roll, every required
    school action done on 2026-11-20. ``extra`` fields (e.g. ``parents``) follow the child.
    A fresh copy each call, so a test may change it."""
    return {
        "mendix_reference": reference,
        "kind": "CME",
        "received_at": received_at,
        "school": copy.deepcopy(SCHOOL),
        "child": copy.deepcopy(child),
        **copy.deepcopy(extra),
        "on_roll": False,
        "school_actions": [{"action": a, "date": "2026-11-20"} for a in _ALL_ACTIONS],
    }
