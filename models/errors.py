"""Errors the data layer raises, with messages a CME officer can act on.

    CmeDataError
    ├── DuplicateError        a unique key already exists (which key is named)
    └── InvalidRecordError    a record failed validation (fields named, values never shown)

Messages name tables, fields and rules, never the values: the values are children's data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

__all__ = [
    "CmeDataError",
    "DuplicateError",
    "InvalidRecordError",
    "describe_validation_error",
    "explain_integrity_error",
    "integrity_errors_explained",
]


class CmeDataError(Exception):
    """Base class for data-layer errors."""


class DuplicateError(CmeDataError):
    """A row would break a uniqueness rule."""

    def __init__(self, key: str, meaning: str) -> None:
        self.key = key
        super().__init__(meaning)


class InvalidRecordError(CmeDataError):
    """A record failed validation; ``problems`` is a list of ``field: what is wrong``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# constraint or column → plain-language meaning
_MEANINGS: dict[str, str] = {
    "referral.mendix_reference": "a referral with this Mendix reference already exists "
    "(send it as an update to that case instead)",
    "uq_referral_mendix_reference": "a referral with this Mendix reference already exists "
    "(send it as an update to that case instead)",
    "notification.idempotency_key": "this notification was already queued "
    "(same idempotency key); it will not be sent twice",
    "uq_notification_idempotency_key": "this notification was already queued "
    "(same idempotency key); it will not be sent twice",
    "uq_check_referral_round": "this agency was already checked for this referral in this "
    "tracing round",
    "check.referral_id, check.connector, check.round": "this agency was already checked for "
    "this referral in this tracing round",
    "school.urn": "a school with this URN already exists",
    "uq_school_urn": "a school with this URN already exists",
}


def explain_integrity_error(exc: IntegrityError) -> CmeDataError:
    """Turn a driver's integrity error into a :class:`CmeDataError` naming the rule broken."""
    orig = exc.orig
    key: str | None = None
    diag = getattr(orig, "diag", None)  # psycopg
    if diag is not None and getattr(diag, "constraint_name", None):
        key = diag.constraint_name
    else:
        m = re.search(r"UNIQUE constraint failed: (.+)$", str(orig))
        if m:
            key = m.group(1).strip()
    if key is not None and key in _MEANINGS:
        return DuplicateError(key, _MEANINGS[key])
    if key is not None:
        return DuplicateError(key, f"uniqueness rule {key} would be broken")
    # Don't echo the driver message: it can quote the offending row's values.
    return CmeDataError("the database refused the change (an integrity rule was broken)")


@contextmanager
def integrity_errors_explained(session: Session) -> Iterator[None]:
    """Flush inside this block; an ``IntegrityError`` becomes a clear :class:`CmeDataError`."""
    try:
        yield
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise explain_integrity_error(exc) from None


def describe_validation_error(exc: ValidationError) -> list[str]:
    """``field.path: message`` for each problem, without the input values."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(record)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{loc}: {msg}")
    return out
