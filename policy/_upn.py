"""Unique Pupil Numbers: the check letter and validation.

Encodes docs/guidance.md, *Identifiers*, "UPN": 13 characters: check letter + LA number (3 digits)
+ establishment number (4) + year of allocation (2) + serial (3; a *temporary* UPN ends in a
letter). Check letter: weight characters 2-13 by 2-13 (a letter in position 13 has its index
in the alphabet below), sum, mod 23, index into ``ABCDEFGHJKLMNPQRTUVWXYZ``. No list of LA
codes is consulted.
"""

from __future__ import annotations

__all__ = ["UPN_ALPHABET", "is_valid_upn", "upn_check_letter", "upn_problem"]

#: The 23 letters used for check letters and temporary-UPN final letters (no I, O, S).
UPN_ALPHABET = "ABCDEFGHJKLMNPQRTUVWXYZ"

_DIGITS = frozenset("0123456789")


def _body_problem(body: str) -> str | None:
    """Why the 12 characters after the check letter are malformed, or None."""
    if len(body) != 12:
        return f"UPN body must be 12 characters (got {len(body)})"
    if not all(c in _DIGITS for c in body[:11]):
        return "UPN characters 2-12 must be digits"
    if body[11] not in _DIGITS and body[11] not in UPN_ALPHABET:
        return "UPN character 13 must be a digit or a letter other than I, O or S"
    return None


def upn_check_letter(body: str) -> str:
    """Return the check letter for ``body``, the 12 characters that follow it in a UPN.

    docs/guidance.md, Identifiers: "weight characters 2-13 by 2-13 (a letter in position 13 has its
    index in the alphabet below), sum, mod 23, index into ABCDEFGHJKLMNPQRTUVWXYZ".
    The letter's index is 0-based (A=0), which is what makes ``G80120000101A`` valid.

    ``body`` is stripped and upper-cased first. Raises ``ValueError`` (with a message that
    does not repeat the input) when it is not 11 digits followed by a digit or a letter of
    :data:`UPN_ALPHABET`.
    """
    body = body.strip().upper()
    problem = _body_problem(body)
    if problem is not None:
        raise ValueError(problem)
    total = 0
    for weight, char in enumerate(body, start=2):
        value = int(char) if char in _DIGITS else UPN_ALPHABET.index(char)
        total += weight * value
    return UPN_ALPHABET[total % 23]


def upn_problem(value: str) -> str | None:
    """Return a short reason why ``value`` is not a valid UPN, or None.

    docs/guidance.md, Identifiers.

    The reason names what is wrong (length, characters, check letter) and never echoes the
    value, so it is safe for error messages and logs. ``value`` is stripped and upper-cased
    first, as in :func:`is_valid_upn`.
    """
    upn = value.strip().upper()
    if len(upn) != 13:
        return f"UPN must be 13 characters (got {len(upn)})"
    if upn[0] not in UPN_ALPHABET:
        return "UPN must start with a check letter other than I, O or S"
    problem = _body_problem(upn[1:])
    if problem is not None:
        return problem
    if upn_check_letter(upn[1:]) != upn[0]:
        return "UPN check letter does not match"
    return None


def is_valid_upn(value: str) -> bool:
    """True iff ``value``, stripped and upper-cased, is a valid permanent or temporary UPN.

    docs/guidance.md, Identifiers, "UPN" (structure and check letter; no fixed list of LA codes).
    """
    return upn_problem(value) is None
