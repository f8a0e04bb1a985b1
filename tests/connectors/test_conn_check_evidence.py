"""Issue 16, point 4: a check's evidence is written and read through one typed model,
``connectors.CheckEvidence`` — never a dict read back by string keys.

The model rejects what a dict would let through unnoticed (a misspelt key reads as "not
said"); a stored value that does not validate reads as a clear, PII-free problem, not a crash;
rows stored before fields were added still read.
"""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors import CheckEvidence, Evidence, StoredEvidence

ROOT = Path(__file__).resolve().parents[2]
STREET = "14 Quillon Terrace"


def test_a_misspelt_key_is_rejected_on_write_and_on_read() -> None:
    raw = {"items": [{"kind": "on_roll", "school_urn": "125111", "matchbasis": "identifier"}]}
    with pytest.raises(ValidationError, match="matchbasis"):
        CheckEvidence.model_validate(raw)
    with pytest.raises(ValidationError, match="matchbasis"):
        Evidence(kind="on_roll", school_urn="125111", matchbasis="identifier")  # type: ignore[call-arg]
    stored = CheckEvidence.read(raw)
    assert not stored.readable and stored.items == ()
    assert stored.problem is not None and "items.0.matchbasis" in stored.problem


def test_the_column_round_trips_every_kind() -> None:
    items = (
        Evidence(kind="on_roll", school_urn="125111", la_code="936", on_roll=True,
                 date_seen=date(2026, 3, 1), match_basis="identifier", confidence=0.97),
        Evidence(kind="resident", address=STREET, postcode="GU1 1AA", la_code="936",
                 address_type="forwarding", match_basis="demographic", safeguarding=True),
        Evidence(kind="registered", la_code="852", source="GP practice"),
        Evidence(kind="departure", departure_date=date(2026, 2, 1), departure_country="PL"),
        Evidence(kind="arrival", departure_date=date(2026, 2, 20)),
        Evidence(kind="ctf", ctf_destination="MMM", ctf_destination_la="MMM"),
    )
    column = CheckEvidence.column(items)
    assert column is not None and len(column["items"]) == len(items)
    assert CheckEvidence.read(column) == StoredEvidence(items=items)
    assert CheckEvidence.column(()) is None
    assert CheckEvidence.read(None) == StoredEvidence()


def test_a_row_stored_before_later_fields_were_added_still_reads() -> None:
    # As tasks/tracing.py wrote it before match_basis, address_type, the CTF destination
    # parts and the 'registered' kind existed (git history of connectors/_models.py).
    old = {"items": [{"kind": "on_roll", "source": None, "address": None, "town": None,
                      "postcode": None, "la_code": "936", "school_urn": "125111",
                      "on_roll": True, "date_seen": "2026-03-01", "departure_date": None,
                      "departure_country": None, "ctf_destination": None,
                      "confidence": 0.9, "safeguarding": False}]}
    stored = CheckEvidence.read(old)
    assert stored.readable
    (e,) = stored.items
    assert (e.school_urn, e.la_code, e.date_seen, e.match_basis) == (
        "125111", "936", date(2026, 3, 1), None)


@pytest.mark.parametrize("stored", [
    {"address": STREET, "postcode": "SO23 8UJ"},           # no items wrapper
    {"items": []},                                         # found, but nothing
    {"items": [{"kind": "resident"}]},                     # a residence with no place
    {"items": [{"kind": "on_roll", "school_urn": STREET}]},  # not a URN
    {"items": [{"kind": "lives_at", "address": STREET}]},  # not a kind
    "not json object",
])
def test_a_stored_value_that_does_not_validate_is_a_problem_that_names_no_values(
        stored: object) -> None:
    got = CheckEvidence.read(stored)
    assert not got.readable and got.items == ()
    assert got.problem and got.problem.startswith("stored evidence does not read")
    assert STREET not in got.problem and "SO23" not in got.problem


_FORBIDDEN = ("evidence.get(", '.get("items"', "['items']", '["items"]', '{"items":')


def test_no_code_reads_or_writes_a_checks_evidence_by_string_keys() -> None:
    """Every read and write of ``Check.evidence`` goes through CheckEvidence: no package of
    the project builds the stored dict or reads it back by key."""
    offenders = []
    for package in ("cme", "flows", "tasks", "notifications", "models", "policy", "sandbox",
                    "connectors"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            ast.parse(text)  # a file that does not parse would hide offenders
            for no, line in enumerate(text.splitlines(), 1):
                if any(f in line for f in _FORBIDDEN) or (
                        "evidence" in line and ".get(\"" in line):
                    offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert offenders == []
