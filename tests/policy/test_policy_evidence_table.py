"""Issue 16, point 4: turning evidence into the facts ``policy.decide`` compares is policy
(``policy.results_from_evidence``), read here as a table: one piece of evidence in, the
rulebook's result out. Uses only ``policy`` (it stays importable alone)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from evidence_kit import Ev

from policy import CheckOutcome, CheckResult, MatchBasis, results_from_evidence

SEEN = date(2026, 2, 27)
LEFT = date(2026, 1, 5)
BACK = date(2026, 2, 1)

#: (evidence, the facts of the one result it gives; unnamed fields keep their defaults)
TABLE: list[tuple[str, Ev, dict[str, Any]]] = [
    ("on roll", Ev("on_roll", school_urn="125111", la_code="936", date_seen=SEEN),
     {"school_urn": "125111", "la_code": "936", "seen_on": SEEN}),
    ("on roll said false is nothing", Ev("on_roll", school_urn="125111", on_roll=False), {}),
    ("registered: the LA only, never an address",
     Ev("registered", la_code="852", postcode="PO1 2AB", date_seen=SEEN),
     {"la_code": "852", "registered": True, "seen_on": SEEN}),
    ("resident: address key normalised",
     Ev("resident", address="1 Row Lane", postcode="gu1 1aa", la_code="936"),
     {"la_code": "936", "postcode": "gu1 1aa", "address_key": "1ROWLANEGU11AA"}),
    ("address with only an LA", Ev("address", la_code="936"), {"la_code": "936"}),
    ("departure", Ev("departure", departure_date=LEFT, departure_country="PL"),
     {"departure_date": LEFT, "departure_country": "PL"}),
    ("ctf: the destination LA first", Ev("ctf", ctf_destination="MMM/MMMM",
                                         ctf_destination_la="MMM"),
     {"ctf_destination": "MMM"}),
    ("ctf: the raw destination when no LA", Ev("ctf", ctf_destination="936/2001"),
     {"ctf_destination": "936/2001"}),
    ("an arrival alone is nothing usable", Ev("arrival", departure_date=BACK), {}),
    ("a kind the rulebook does not read is nothing usable", Ev("lives_at", la_code="936"), {}),
]


@pytest.mark.parametrize(("evidence", "facts"), [row[1:] for row in TABLE],
                         ids=[row[0] for row in TABLE])
def test_one_piece_of_evidence_gives_these_facts(evidence: Ev, facts: dict[str, Any]) -> None:
    (got,) = results_from_evidence("agency", "found", [evidence])
    usable = bool(facts)
    want = CheckResult(connector="agency", outcome=CheckOutcome.FOUND, **facts,
                       **({"match_basis": MatchBasis.IDENTIFIER} if usable else {}))
    assert got == want


@pytest.mark.parametrize(("basis", "confidence", "want"), [
    ("identifier", 0.95, MatchBasis.IDENTIFIER),
    ("demographic", 0.6, MatchBasis.DEMOGRAPHIC),
    (None, 0.8, MatchBasis.DEMOGRAPHIC),  # not said: the safe reading
])
def test_how_the_agency_matched_is_carried(basis: str | None, confidence: float,
                                           want: MatchBasis) -> None:
    (got,) = results_from_evidence("agency", "found", [
        Ev("on_roll", school_urn="125111", match_basis=basis, confidence=confidence)])
    assert (got.match_basis, got.confidence) == (want, confidence)


@pytest.mark.parametrize("outcome", ["not_found", "pending", "error"])
def test_other_outcomes_give_the_outcome_alone(outcome: str) -> None:
    (got,) = results_from_evidence("agency", outcome, [], expected_by=SEEN, official=True)
    assert got == CheckResult(connector="agency", outcome=CheckOutcome(outcome),
                              expected_by=SEEN, official=True)


def test_an_arrival_is_carried_on_the_same_agencys_departure() -> None:
    got = results_from_evidence("border_force", "found", [
        Ev("departure", departure_date=LEFT), Ev("arrival", departure_date=BACK)])
    assert [(r.departure_date, r.seen_on) for r in got] == [(LEFT, BACK)]


def test_every_piece_is_its_own_result_and_a_flag_on_any_is_kept() -> None:
    got = results_from_evidence("other_la", "found", [
        Ev("on_roll", school_urn="125111"), Ev("on_roll", school_urn="125222"),
        Ev("arrival", departure_date=BACK, safeguarding=True)])
    assert [r.school_urn for r in got] == ["125111", "125222"]
    (flagged,) = results_from_evidence("other_la", "found", [
        Ev("arrival", departure_date=BACK, safeguarding=True)])
    assert flagged.safeguarding and flagged.school_urn is None
