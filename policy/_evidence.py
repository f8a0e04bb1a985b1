"""From what an agency said to the facts the rulebook compares, and which rounds count.

Encodes ``docs/guidance.md``, *The tracing rulebook*: how evidence is read, how strongly an
agency's match identifies the child, and what a "round" of tracing is.

- Every piece of evidence an agency returns becomes its own :class:`CheckResult`: a second
  school, LA or address from one agency reaches :func:`policy.decide` like the first.
- **How the agency matched the child** (:class:`MatchBasis`): on an *identifier* (UPN, NHS
  number) or on *demographics* only (names and date of birth, perhaps a postcode). Evidence
  that does not say is read as demographic: the safe reading.
- **Rounds that count** (:func:`complete_rounds`): a round counts towards "whereabouts
  unknown" only when every enabled agency gave a final answer in it (found or not found; none
  pending, none in error), and only one round a day counts, so an officer's repeated or narrow
  trace is not a round.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Protocol

from policy._decide import CheckOutcome, CheckResult, MatchBasis

__all__ = [
    "EVIDENCE_KINDS",
    "Answer",
    "EvidenceLike",
    "complete_rounds",
    "evidence_problems",
    "results_from_evidence",
]

#: The kinds of evidence the rulebook reads (docs/connectors.md, "How the rulebook uses
#: evidence"): on a school roll, living at an address (``resident``/``address``), registered
#: with a service in an LA (a lead, never a home address), an LPD destination (``ctf``), a
#: departure from the UK and an arrival back.
EVIDENCE_KINDS: frozenset[str] = frozenset(
    {"on_roll", "resident", "address", "registered", "ctf", "departure", "arrival"}
)


class EvidenceLike(Protocol):
    """What the rulebook reads of one piece of evidence (``connectors.Evidence`` has it all).

    ``kind`` is one of :data:`EVIDENCE_KINDS`; ``match_basis`` is ``identifier``,
    ``demographic`` or None (not said).
    """

    @property
    def kind(self) -> str: ...
    @property
    def la_code(self) -> str | None: ...
    @property
    def school_urn(self) -> str | None: ...
    @property
    def on_roll(self) -> bool | None: ...
    @property
    def address(self) -> str | None: ...
    @property
    def postcode(self) -> str | None: ...
    @property
    def date_seen(self) -> date | None: ...
    @property
    def departure_date(self) -> date | None: ...
    @property
    def departure_country(self) -> str | None: ...
    @property
    def ctf_destination(self) -> str | None: ...
    @property
    def ctf_destination_la(self) -> str | None: ...
    @property
    def confidence(self) -> float: ...
    @property
    def safeguarding(self) -> bool: ...
    @property
    def match_basis(self) -> str | None: ...


def _address_key(address: str | None, postcode: str | None) -> str | None:
    if not (address or postcode):
        return None
    raw = f"{address or ''}{postcode or ''}".upper()
    return "".join(ch for ch in raw if ch.isalnum()) or None


def results_from_evidence(
    connector: str,
    outcome: CheckOutcome | str,
    evidence: Sequence[EvidenceLike],
    *,
    expected_by: date | None = None,
    official: bool = False,
) -> tuple[CheckResult, ...]:
    """One connector's answer as the rulebook's results: one per piece of evidence.

    A ``found`` answer gives one :class:`CheckResult` per usable piece of evidence (on roll,
    residence or address, departure, LPD destination); an arrival in the UK is carried on the
    same connector's departures as ``seen_on`` (a later arrival means the child came back).
    An answer with no usable evidence, and every other outcome, gives one result with the
    outcome alone. ``official`` marks an agency answering a formal request from its own
    statutory records (DWP, Border Force). Nothing is dropped: a connector naming two schools
    gives two on-roll results.
    """
    kind = CheckOutcome(outcome)
    if kind is not CheckOutcome.FOUND:
        return (CheckResult(connector=connector, outcome=kind, expected_by=expected_by,
                            official=official,
                            safeguarding=any(e.safeguarding for e in evidence)),)
    arrivals = [e.departure_date for e in evidence
                if e.kind == "arrival" and e.departure_date is not None]
    latest_arrival = max(arrivals) if arrivals else None
    out: list[CheckResult] = []
    for e in evidence:
        base = CheckResult(
            connector=connector, outcome=kind, official=official, expected_by=expected_by,
            match_basis=MatchBasis(e.match_basis) if e.match_basis else MatchBasis.DEMOGRAPHIC,
            confidence=e.confidence, safeguarding=e.safeguarding,
        )
        if e.kind == "on_roll" and e.school_urn and e.on_roll is not False:
            out.append(replace(base, school_urn=e.school_urn, la_code=e.la_code,
                               seen_on=e.date_seen))
        elif e.kind == "registered" and e.la_code:
            # The service's LA only: its address or postcode is not the child's home, so it
            # is never compared with addresses.
            out.append(replace(base, la_code=e.la_code, registered=True, seen_on=e.date_seen))
        elif e.kind in ("resident", "address") and (e.address or e.postcode or e.la_code):
            out.append(replace(base, la_code=e.la_code, postcode=e.postcode,
                               address_key=_address_key(e.address, e.postcode),
                               seen_on=e.date_seen))
        elif e.kind == "departure" and e.departure_date is not None:
            out.append(replace(base, departure_date=e.departure_date,
                               departure_country=e.departure_country, seen_on=latest_arrival))
        elif e.kind == "ctf" and (e.ctf_destination_la or e.ctf_destination):
            out.append(replace(base, ctf_destination=e.ctf_destination_la or e.ctf_destination))
    if not out:
        # Found, but nothing the rules can use (e.g. only an arrival): no whereabouts. A
        # safeguarding flag on it still counts.
        out.append(CheckResult(connector=connector, outcome=kind, official=official,
                               expected_by=expected_by,
                               safeguarding=any(e.safeguarding for e in evidence)))
    return tuple(out)


def _usable(result: CheckResult) -> bool:
    return any(v is not None for v in (result.school_urn, result.la_code, result.address_key,
                                       result.postcode, result.departure_date,
                                       result.ctf_destination))


def evidence_problems(evidence: Sequence[EvidenceLike]) -> list[str]:
    """What stops the rulebook from weighing one ``found`` answer's evidence as intended, one
    line each (empty: nothing). Checked by the connector conformance kit: a kind the rulebook
    does not read, evidence that does not say how the agency matched the child (read as
    demographic, so never acted on alone), a confidence outside 0-1, and an answer with
    nothing the rules can use."""
    problems: list[str] = []
    for i, e in enumerate(evidence):
        if e.kind not in EVIDENCE_KINDS:
            problems.append(f"evidence {i}: kind {e.kind!r} is not one the rulebook reads "
                            f"({', '.join(sorted(EVIDENCE_KINDS))})")
        if e.match_basis not in ("identifier", "demographic"):
            problems.append(f"evidence {i}: match_basis not said (identifier or demographic): "
                            "it would be read as demographic, a possible match at best")
        if not 0.0 <= e.confidence <= 1.0:
            problems.append(f"evidence {i}: confidence must be between 0 and 1")
    if evidence and not any(_usable(r) for r in results_from_evidence("kit", "found", evidence)):
        problems.append("the answer is found but carries nothing the rules use (a school URN, "
                        "an LA, an address or postcode, a departure date, an LPD destination)")
    return problems


@dataclass(frozen=True, slots=True)
class Answer:
    """One recorded check, as :func:`complete_rounds` needs it."""

    round: int
    connector: str
    outcome: str
    on: date


def complete_rounds(answers: Iterable[Answer], enabled: frozenset[str]) -> int:
    """How many tracing rounds count towards "whereabouts unknown".

    ``docs/guidance.md``, *Rounds*: a round counts when every enabled connector gave a final
    answer in it (``found`` or ``not_found``: none pending, none in error, none missing), and
    at most one round counts per calendar day (``Answer.on``, the London date of the answer;
    a round's day is its latest answer's). So a trace limited to some agencies, or repeated
    on the same day, is not a round. With no enabled connector no round counts.
    """
    if not enabled:
        return 0
    final: dict[int, set[str]] = defaultdict(set)
    day: dict[int, date] = {}
    for a in answers:
        if a.outcome in ("found", "not_found"):
            final[a.round].add(a.connector)
            day[a.round] = max(day.get(a.round, a.on), a.on)
    counted_days: set[date] = set()
    for rnd in sorted(final):
        if enabled <= final[rnd] and day[rnd] not in counted_days:
            counted_days.add(day[rnd])
    return len(counted_days)
