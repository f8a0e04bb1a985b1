"""Reusable validated identifier types, checked once at the edge.

Each type is an ``Annotated`` string: use it in a pydantic model field and the value is
normalised (stripped, upper-cased where the format says so) and validated when the model
is built. Error messages name the rule that failed, never the value: these fields belong
to children, and a validation error may end up in a log.

- :data:`UPN` — unique pupil number, 13 characters with a check letter (DfE).
- :data:`URN` — a school's 6-digit unique reference number.
- :data:`LACode` — a local authority's 3-digit number (Hampshire is 850).
- :data:`Postcode` — a UK postcode, normalised to ``OUTWARD INWARD``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

__all__ = ["UPN", "URN", "LACode", "Postcode", "normalise_postcode"]

# [0-9], not \d: \d also matches other scripts' digits (Arabic-Indic, full-width, ...).
_URN = re.compile(r"^[0-9]{6}$")
_LA = re.compile(r"^[0-9]{3}$")
# BS 7666 shapes: A9 9AA, A99 9AA, A9A 9AA, AA9 9AA, AA99 9AA, AA9A 9AA (+ GIR 0AA).
_POSTCODE = re.compile(r"^(GIR ?0AA|[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})$")


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _check_upn(value: str) -> str:
    from policy import upn_problem

    problem = upn_problem(value)
    if problem is not None:
        raise ValueError(f"not a valid UPN: {problem}")
    return value


def _check_urn(value: str) -> str:
    if not _URN.match(value):
        raise ValueError("a URN is exactly 6 digits")
    return value


def _check_la(value: str) -> str:
    if not _LA.match(value):
        raise ValueError("an LA code is exactly 3 digits")
    return value


def normalise_postcode(value: str) -> str:
    """Return ``value`` as ``OUTWARD INWARD`` upper case; raise ``ValueError`` if not a postcode."""
    compact = re.sub(r"\s+", "", value.upper())
    if not _POSTCODE.match(compact):
        raise ValueError("not a UK postcode (expected outward and inward parts, e.g. 'AB1 2CD')")
    return f"{compact[:-3]} {compact[-3:]}"


UPN = Annotated[str, BeforeValidator(_upper), AfterValidator(_check_upn)]
URN = Annotated[str, BeforeValidator(_strip), AfterValidator(_check_urn)]
LACode = Annotated[str, BeforeValidator(_strip), AfterValidator(_check_la)]
Postcode = Annotated[str, BeforeValidator(_strip), AfterValidator(normalise_postcode)]
