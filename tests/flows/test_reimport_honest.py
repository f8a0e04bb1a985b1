"""Re-imports are honest (issue 18, point 4): a file imported again, or again after a crash,
adds no quarantine row, counts an unchanged record as unchanged, and leaves no ``.part``."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import Session, col, select

from models import CaseEvent, NotificationStatus, QuarantinedRecord, Referral, get_engine
from notifications import FileChannel, dispatch_pending
from tasks.intake import IntakeReport, ingest_records, read_jsonl
from tests.la_configs import intake_config
from tests.referral_records import CHILD_WITH_UPN_AND_ADDRESS, referral_record

FIRST = referral_record("CME-2026-910001", child=CHILD_WITH_UPN_AND_ADDRESS,
                        parents=[{"name": "Ada Quillfeather", "relationship": "mother"}])


def second_school_referral() -> dict[str, object]:
    """The same child (same UPN), referred by another school that knew an older address and
    another carer: linked to the first case, its details differ from the child row."""
    r = copy.deepcopy(FIRST)
    r["mendix_reference"] = "CME-2026-910002"
    r["school"] = {"urn": "116001", "name": "Other Primary", "la_code": "850",
                   "email": "office@other.example.org"}
    r["child"]["address"] = {"line1": "9 Elsewhere Lane", "town": "Andover",  # type: ignore[index]
                             "postcode": "SP10 1AA"}
    r["parents"] = [{"name": "Bram Quillfeather", "relationship": "father"}]
    r["received_at"] = "2026-11-24T10:00:00+00:00"
    return r


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def import_file(db: str, path: Path) -> IntakeReport:
    return ingest_records(read_jsonl(path), source=path.name, cfg=intake_config(db_url=db))


def school_updates(db: str) -> list[str]:
    with Session(get_engine(db)) as s:
        return [e.text for e in s.exec(select(CaseEvent).where(CaseEvent.kind == "school_update"))]


def test_reimporting_a_file_adds_no_quarantine_row(clean_db: str, tmp_path: Path) -> None:
    bad = '{"mendix_reference": "CME-2026-910009", "kind": "CME"'  # cut short
    path = write(tmp_path / "referrals.jsonl", json.dumps(FIRST), bad, "[1, 2]", bad)
    first = import_file(clean_db, path)
    # A plain re-import, then a re-run as after a crash part-way through (the first lines
    # again, as a restarted batch would read them).
    again = import_file(clean_db, path)
    ingest_records(list(read_jsonl(path))[:2], source=path.name, cfg=intake_config(db_url=clean_db))
    assert first.quarantined == again.quarantined == 3  # still reported each time
    assert again.unchanged == 1 and again.accounted == again.received == 4
    with Session(get_engine(clean_db)) as s:
        kept = s.exec(select(QuarantinedRecord).order_by(col(QuarantinedRecord.line_no))).all()
    # One row per line: the same bad text on two lines is two rows, each kept once.
    assert [q.line_no for q in kept] == [2, 3, 4]
    assert all(q.raw_sha256 and q.record_key for q in kept)


def test_an_unchanged_record_counts_as_unchanged(clean_db: str, tmp_path: Path) -> None:
    path = write(tmp_path / "referrals.jsonl", json.dumps(FIRST),
                 json.dumps(second_school_referral()))
    first = import_file(clean_db, path)
    assert first.created == 1 and first.duplicates_linked == 1
    for _ in range(3):
        again = import_file(clean_db, path)
        assert (again.updated, again.unchanged) == (0, 2)
    assert school_updates(clean_db) == []


def test_a_real_change_on_a_linked_referral_is_still_an_update(clean_db: str,
                                                               tmp_path: Path) -> None:
    second = second_school_referral()
    import_file(clean_db, write(tmp_path / "a.jsonl", json.dumps(FIRST), json.dumps(second)))
    second["reason"] = "Neighbours say the family moved to Portsmouth"
    report = import_file(clean_db, write(tmp_path / "b.jsonl", json.dumps(FIRST),
                                         json.dumps(second)))
    assert (report.updated, report.unchanged) == (1, 1)
    # Only what this school changed: not the child's address the other school gave.
    assert school_updates(clean_db) == ["The school sent an update; changed: reason"]


CRASHING_SEND = textwrap.dedent("""
    import asyncio, os, signal, sys
    from datetime import UTC, datetime
    from notifications import FileChannel, dispatch_pending

    def die(*args, **kwargs):  # the machine stops between writing and renaming
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = die
    asyncio.run(dispatch_pending(sys.argv[1], FileChannel(sys.argv[2]),
                                 now=datetime.now(UTC)))
""")


def test_a_send_killed_mid_write_leaves_no_part_file_once_run_again(
    clean_db: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    path = write(tmp_path / "referrals.jsonl", json.dumps(FIRST))
    import_file(clean_db, path)
    child = subprocess.run([sys.executable, "-c", CRASHING_SEND, clean_db, str(outbox)],
                           env={**os.environ}, capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL
    assert list(outbox.glob("*.part")), "the crash left a half-written copy"
    import_file(clean_db, path)  # a plain re-import after the crash
    later = datetime.now(UTC) + timedelta(minutes=11)  # the dead dispatcher's claim expired
    report = asyncio_run(dispatch_pending(clean_db, FileChannel(outbox), now=later))
    assert report.sent == 1
    assert sorted(p.suffix for p in outbox.iterdir()) == [".eml"]
    with Session(get_engine(clean_db)) as s:
        ref = s.exec(select(Referral)).one()
        assert ref.mendix_reference == FIRST["mendix_reference"]
    from models import Notification

    with Session(get_engine(clean_db)) as s:
        assert [n.status for n in s.exec(select(Notification))] == [NotificationStatus.sent]


def asyncio_run(coro):  # type: ignore[no-untyped-def]
    import asyncio

    return asyncio.run(coro)
