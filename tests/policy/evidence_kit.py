"""Evidence as a connector returns it, for the policy tables: the fields
``policy.EvidenceLike`` reads (``connectors.Evidence`` has them all), without importing
``connectors`` so the policy tests stand on ``policy`` alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Ev:
    """One piece of evidence; defaults are an identifier match with nothing found."""

    kind: str
    la_code: str | None = None
    school_urn: str | None = None
    on_roll: bool | None = None
    address: str | None = None
    postcode: str | None = None
    date_seen: date | None = None
    departure_date: date | None = None
    departure_country: str | None = None
    ctf_destination: str | None = None
    ctf_destination_la: str | None = None
    confidence: float = 1.0
    safeguarding: bool = False
    match_basis: str | None = "identifier"
