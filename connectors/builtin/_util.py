"""Small parsing helpers shared by the built-ins."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from .._errors import ConnectorError, MalformedResponse, TransientError
from .._models import Evidence, Result


def as_date(value: Any) -> date | None:
    """An ISO date or ``None``; anything else is a malformed response."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise MalformedResponse("date field is not a string")
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise MalformedResponse("date field is not an ISO date") from exc


def as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedResponse("expected a JSON object")
    return value


def combine(name: str, outcomes: Sequence[list[Evidence] | ConnectorError]) -> Result:
    """One result from several offices' answers (found beats error beats not found)."""
    evidence = [e for o in outcomes if isinstance(o, list) for e in o]
    if evidence:
        return Result.found(evidence)
    errors = [o for o in outcomes if isinstance(o, ConnectorError)]
    if not errors:
        return Result.not_found()
    worst = next((e for e in errors if isinstance(e, TransientError)), errors[0])
    return Result.error(
        worst.kind, worst.code,
        f"{name}: {len(errors)} of {len(outcomes)} offices could not answer ({worst.code})",
        status_code=worst.status_code,
    )
