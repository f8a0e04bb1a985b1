"""The disclosure audit under faults: what each agency actually received (the sandbox's own
request log, ``Sandbox.seen``, over real HTTP) is what the check rows record as disclosed,
never more than the connector declares, and ``cme audit disclosures --json`` says the same.

Uses the session's six-night fault run (``fault_run`` in conftest.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from faultkit import AGENCIES, CheckRow, FaultRun, Night, whose

from connectors import discover

TRANSPORT = {"connection_error", "timeout", "circuit_open"}


def _declared() -> dict[str, frozenset[str]]:
    catalogue = discover()
    return {name: frozenset(catalogue[name].cls.fields) for name in AGENCIES}


def _received(night: Night, fault_run: FaultRun) -> dict[tuple[str, str], set[str]]:
    """(reference, agency) → the names of the fields the agency received tonight.

    A request is attributed by its values: it must match exactly one referral that this
    connector checked tonight, or it is a disclosure without an audit row.
    """
    checked: dict[str, set[str]] = defaultdict(set)
    for c in night.checks:
        checked[c.connector].add(c.reference)
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in night.seen:
        if not s.fields:
            continue  # a poll: only the agency's reference travels, in the path
        people = {ref: fault_run.people[ref] for ref in checked[s.agency]}
        matches = whose(s.fields, people)
        assert len(matches) == 1, (
            f"night {night.number}: a {s.agency} request carrying {sorted(s.field_names)} "
            f"matches {len(matches)} of tonight's checks")
        out[(matches.pop(), s.agency)] |= set(s.field_names)
    return out


def test_fields_received_equal_fields_recorded_and_never_exceed_the_declaration(
        fault_run: FaultRun) -> None:
    declared = _declared()
    compared = 0
    for night in fault_run.nights:
        received = _received(night, fault_run)
        rows: dict[tuple[str, str], CheckRow] = {(c.reference, c.connector): c
                                                 for c in night.checks}
        # every request that carried personal data has its check row
        assert set(received) <= set(rows), night.number
        for key, row in rows.items():
            ref, agency = key
            recorded = set(row.fields_disclosed)
            got = received.get(key, set())
            assert recorded <= declared[agency], (night.number, row)
            assert got <= declared[agency], (night.number, key, got)
            if got:
                assert got == recorded, (night.number, row, sorted(got))
                compared += 1
            elif recorded:
                # Recorded but never received: only when the check failed in transport (a
                # refused connection, a timeout, or the circuit opening after an attempt), so
                # the audit errs on the side of saying more left than did.
                assert row.outcome == "error", (night.number, row)
                assert row.error_code in TRANSPORT, (night.number, row)
    assert compared > 0


def test_lpd_sends_names_only_when_there_is_no_upn(fault_run: FaultRun) -> None:
    seen = 0
    for night in fault_run.nights:
        for s in night.seen:
            if s.agency != "lpd" or not s.fields:
                continue
            matches = whose(s.fields, fault_run.people)
            has_upn = {bool(fault_run.people[ref]["upn"]) for ref in matches}
            if s.field_names == {"upn"}:
                assert has_upn == {True}
            else:
                assert s.field_names == {"forename", "surname", "dob"}
                assert has_upn == {False}, "names sent to the LPD although a UPN was known"
            seen += 1
    assert seen > 0


def _all_checks(fault_run: FaultRun) -> list[CheckRow]:
    return [c for n in fault_run.nights for c in n.checks]


def _audit_rows(audit: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((c["reference"], c["connector"], c["round"], tuple(c["fields_disclosed"]),
                   c["outcome"], c["run_id"]) for c in audit["checks"])


def _db_rows(checks: list[CheckRow]) -> list[tuple[Any, ...]]:
    return sorted((c.reference, c.connector, c.round, c.fields_disclosed, c.outcome, c.run_id)
                  for c in checks)


def test_cme_audit_disclosures_json_agrees_with_the_rows_and_the_wire(
        fault_run: FaultRun) -> None:
    audit = fault_run.audit_json
    checks = _all_checks(fault_run)
    assert _audit_rows(audit) == _db_rows(checks)

    received: dict[str, set[str]] = defaultdict(set)
    for night in fault_run.nights:
        for s in night.seen:
            received[s.agency] |= set(s.field_names)
    summary = {s["connector"]: s for s in audit["summary"]}
    assert set(summary) == set(AGENCIES)
    for agency in AGENCIES:
        mine = [c for c in checks if c.connector == agency]
        disclosing = [c for c in mine if c.fields_disclosed]
        s = summary[agency]
        assert s["checks"] == len(mine)
        assert s["disclosures"] == len(disclosing)
        assert s["referrals"] == len({c.reference for c in disclosing})
        assert set(s["fields"]) == received[agency], agency
        assert s["versions"] == ["1.0.0"]

    # one case at a time: exactly that case's rows
    assert fault_run.audit_by_ref
    for ref, one in fault_run.audit_by_ref.items():
        assert _audit_rows(one) == _db_rows([c for c in checks if c.reference == ref]), ref
        assert {c["reference"] for c in one["checks"]} == {ref}

    # field names only: no value a child could be identified by
    text = json.dumps(audit)
    for values in fault_run.people.values():
        for key in ("upn", "surname", "postcode", "address_line", "dob"):
            if values.get(key):
                assert f'"{values[key]}"' not in text, key
