"""The hostile inputs that broke intake, pinned one by one (the fuzzers in
``test_hostile_intake_fuzz.py`` found them; these make sure every run tries them).

Each was a crash of the whole batch, a record counted twice, a record wrongly accepted or a
plausible child wrongly refused; each is now quarantined with a reason, or accepted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_kit import child_identity, reference
from sqlalchemy import event
from sqlmodel import Session, select

from models import Notification, QuarantinedRecord, Referral, get_engine
from tasks.intake import IntakeReport, ingest_records, read_jsonl
from tests.la_configs import intake_config

GOOD: dict[str, Any] = {
    "mendix_reference": reference(1, "CASE"),
    "kind": "CME",
    "received_at": "2026-11-20T10:00:00+00:00",
    "school": {"urn": "116001", "name": "Fuzzbury Test Primary 1", "la_code": "850",
               "email": "office1@fuzzbury-school.example.org"},
    "child": {"forename": "Zebedee", "surname": "Quillfeather", "dob": "2015-02-28",
              "upn": child_identity(0)["upn"],
              "address": {"line1": "1 Synthetic Row", "town": "Winchester",
                          "postcode": "SO23 8UJ"}},
    "on_roll": False,
}


def rec(n: int = 1, **changes: Any) -> dict[str, Any]:
    r = copy.deepcopy(GOOD)
    r["mendix_reference"] = reference(n, "CASE")
    for path, value in changes.items():
        node = r
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return r


def ingest(db: str, *lines: dict[str, Any] | str, source: str = "cases.jsonl") -> IntakeReport:
    numbered = [(i, x if isinstance(x, str) else json.dumps(x)) for i, x in enumerate(lines, 1)]
    report = ingest_records(numbered, source=source, cfg=intake_config(db_url=db))
    assert report.accounted == report.received == len(lines), report
    return report


def quarantined(db: str) -> list[QuarantinedRecord]:
    with Session(get_engine(db)) as s:
        return list(s.exec(select(QuarantinedRecord).order_by(QuarantinedRecord.id)))  # type: ignore[arg-type]


@pytest.mark.parametrize("line", [
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 40_000 + "1" + "}" * 40_000,  # 40,000 deep: 100,000 would be over 256 KiB
], ids=["array", "object"])
def test_deeply_nested_json_is_quarantined_and_the_batch_survives(clean_db: str,
                                                                     line: str) -> None:
    report = ingest(clean_db, rec(1), line, rec(2, **{"child.upn": None,
                                                      "child.surname": "Brackenthwaite"}))
    assert (report.created, report.quarantined) == (2, 1)
    (row,) = quarantined(clean_db)
    assert row.line_no == 2 and row.raw == line
    assert row.reasons == ["(record): not valid JSON"]


@pytest.mark.parametrize(("line", "stored"), [
    ('{"mendix_reference": "\\ud800", "kind": "CME"}', None),
    ('{"mendix_reference": "CME\\u0000X"}', None),
    ("{\x00\x00}", "{\ufffd\ufffd}"),
    ("\ud800{}", "\ufffd{}"),
], ids=["escaped-lone-surrogate-reference", "escaped-nul-reference", "raw-nul", "raw-surrogate"])
def test_text_a_database_cannot_store_is_still_quarantined(clean_db: str, line: str,
                                                          stored: str | None) -> None:
    """NUL (refused by PostgreSQL) and lone surrogates (encodable by neither driver) in the
    raw line or the reference picked out of it: the row is kept, shown with U+FFFD."""
    report = ingest(clean_db, line, rec(1))
    assert (report.quarantined, report.created) == (1, 1)
    (row,) = quarantined(clean_db)
    assert row.raw == (stored if stored is not None else line)
    assert row.reasons
    assert row.mendix_reference is None or "\x00" not in row.mendix_reference


def test_a_long_source_name_does_not_stop_quarantine(clean_db: str) -> None:
    report = ingest(clean_db, "not json", source="x" * 300 + ".jsonl")
    assert report.quarantined == 1
    assert len(quarantined(clean_db)[0].source) <= 200


@pytest.fixture
def database_refuses_reason() -> Iterator[str]:
    """The database refuses a flush holding a referral whose reason is this marker — as
    PostgreSQL refuses a NUL, but on every backend. Only the flush at the savepoint's
    commit sees it (an update changes the reason after the last explicit flush)."""
    marker = "REFUSED-AT-COMMIT"

    def refuse(session: Session, _ctx: Any, _instances: Any) -> None:
        for obj in session.dirty:
            if isinstance(obj, Referral) and obj.reason == marker:
                raise ValueError("the database refused the row")

    event.listen(Session, "before_flush", refuse)
    try:
        yield marker
    finally:
        event.remove(Session, "before_flush", refuse)


def test_an_update_refused_at_commit_is_counted_once(clean_db: str,
                                                     database_refuses_reason: str) -> None:
    ingest(clean_db, rec(1))
    report = ingest(clean_db, rec(1, reason=database_refuses_reason), rec(2, **{
        "child.upn": None, "child.surname": "Brackenthwaite"}))
    assert (report.updated, report.quarantined, report.created) == (0, 1, 1)
    (row,) = quarantined(clean_db)
    assert row.reasons == ["(record): could not be stored (ValueError)"]
    with Session(get_engine(clean_db)) as s:
        first = s.exec(select(Referral).where(
            Referral.mendix_reference == reference(1, "CASE"))).one()
        assert first.reason == ""  # the refused update left the case as it was


def test_an_update_with_a_nul_is_counted_once_on_any_database(clean_db: str) -> None:
    ingest(clean_db, rec(1))
    report = ingest(clean_db, rec(1, reason="moved\x00away"))
    assert report.updated + report.quarantined == 1, report  # which one: the database's call


@pytest.mark.parametrize(("path", "value"), [
    ("school.urn", "١١٦٠٠١"), ("school.urn", "１１６００１"), ("school.la_code", "٨٥٠"),
    ("child.nhs_number", "٩٤٣٤٧٦٥٩١٩"), ("child.address.postcode", "SO٢٣ 8UJ"),
])
def test_digits_of_other_scripts_are_not_identifiers(clean_db: str, path: str,
                                                     value: str) -> None:
    report = ingest(clean_db, rec(1, **{path: value}))
    assert report.quarantined == 1
    assert any(r.startswith(f"{path}:") for r in quarantined(clean_db)[0].reasons)


@pytest.mark.parametrize(("forename", "surname", "initials"), [
    ("Zebedee", "'t Hooftington", "Z.T."),
    ("-Ottoline", "Quillfeather", "O.Q."),
    ("ßophie", "Quillfeather", "ß.Q."),
    ("E\u0301lodie", "Ostrevanney", "E.O."),
])
def test_a_name_that_starts_with_no_letter_still_gets_initials(
    clean_db: str, forename: str, surname: str, initials: str,
) -> None:
    report = ingest(clean_db, rec(1, **{"child.forename": forename,
                                        "child.surname": surname}))
    assert report.created == 1, quarantined(clean_db) and quarantined(clean_db)[0].reasons
    with Session(get_engine(clean_db)) as s:
        ack = s.exec(select(Notification)).first()
        assert ack is not None and ack.personalisation["initials"] == initials


@pytest.mark.parametrize("name", ["-", "'", "123", "\u0301"])
def test_a_name_without_a_letter_is_quarantined_with_the_reason(clean_db: str,
                                                                name: str) -> None:
    report = ingest(clean_db, rec(1, **{"child.surname": name}))
    assert report.quarantined == 1
    assert quarantined(clean_db)[0].reasons == ["child.surname: must contain a letter"]


def test_a_hostile_file_is_read_line_by_line_and_nothing_is_dropped(clean_db: str,
                                                                    tmp_path: Path) -> None:
    """The file reader: invalid UTF-8, NUL bytes, a BOM, CRLF, blank lines, a 3 MB line."""
    good = json.dumps(rec(1)).encode()
    lines = [
        b"\xef\xbb\xbf" + json.dumps(rec(2, **{"child.upn": None,                # BOM
                                                 "child.surname": "Brackenthwaite"})).encode(),
        good + b"\r",                                                          # CRLF
        b"",
        b"   ",
        b"\xff\xfe\x00\x01 not text",
        b'{"mendix_reference": "CME-\x00-1"}',
        b"{" + b" " * 3_000_000 + b"}",
        good,  # the same referral again: an unchanged re-send
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    records = list(read_jsonl(path))
    assert [n for n, _ in records] == [1, 2, 5, 6, 7, 8]  # blank lines are not records
    report = ingest_records(records, source=path.name, cfg=intake_config(db_url=clean_db))
    assert report.received == 6 == report.accounted
    assert (report.created, report.unchanged, report.quarantined) == (2, 1, 3)
    rows = quarantined(clean_db)
    assert [r.line_no for r in rows] == [5, 6, 7]
    assert rows[0].raw.startswith("\ufffd\ufffd\ufffd")  # undecodable bytes and the NUL
    # Refused unread: only a bounded excerpt and the line's hash are kept (issue 18, point 11).
    assert rows[2].reasons[0].startswith("(record): 3000002 bytes, larger than 256 KiB; not read")
    assert len(rows[2].raw) <= 1024 and rows[2].raw_sha256 in rows[2].reasons[0]
