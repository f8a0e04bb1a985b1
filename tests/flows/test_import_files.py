"""Which files intake reads (issue 18, point 10) and reading them in bounded memory (point 11).

The ``intake`` flow's ``file`` parameter is typed in the Prefect UI: it reads only regular
files inside CME_IMPORT_DIR. ``cme import FILE`` is the operator's own command: any regular
file, never a pseudo-file, at most CME_IMPORT_MAX_MB.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from models import QuarantinedRecord, Referral, get_engine
from tasks.import_files import ImportFileError
from tasks.intake import MAX_RECORD_BYTES, ingest_records, read_jsonl
from tests.la_configs import intake_config
from tests.referral_records import referral_record

RECORD = referral_record("CME-2026-930001")


@pytest.fixture
def import_env(prefect_harness: None, clean_db: str, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("CME_") and key != "CME_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    folder = tmp_path / "imports"
    folder.mkdir()
    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    monkeypatch.setenv("CME_IMPORT_DIR", str(folder))
    monkeypatch.setenv("CME_OUTBOX_DIR", str(tmp_path / "outbox"))
    return folder


def stored(db: str) -> tuple[int, int]:
    with Session(get_engine(db)) as s:
        return (len(s.exec(select(Referral)).all()), len(s.exec(select(QuarantinedRecord)).all()))


def run_intake(file: str) -> dict[str, int]:
    from flows.intake import intake

    return asyncio.run(intake(file=file))  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "why"), [
    ("/etc/passwd", "only files inside the import folder"),
    ("/proc/self/environ", "only files inside the import folder"),
    ("/dev/zero", "only files inside the import folder"),
    ("../outside.jsonl", "only files inside the import folder"),
    ("escape.jsonl", "only files inside the import folder"),   # a symlink pointing out
    ("fifo.jsonl", "not a regular file"),
    ("big.jsonl", "more than CME_IMPORT_MAX_MB"),
    ("missing.jsonl", "no such file"),
])
def test_the_intake_flow_reads_only_regular_files_in_the_import_folder(
    import_env: Path, clean_db: str, monkeypatch: pytest.MonkeyPatch, name: str, why: str
) -> None:
    (import_env.parent / "outside.jsonl").write_text(json.dumps(RECORD) + "\n")
    (import_env / "escape.jsonl").symlink_to(import_env.parent / "outside.jsonl")
    os.mkfifo(import_env / "fifo.jsonl")
    monkeypatch.setenv("CME_IMPORT_MAX_MB", "1")
    with (import_env / "big.jsonl").open("wb") as fh:
        fh.truncate(1024 * 1024 + 1)
    with pytest.raises(ImportFileError, match=why) as info:
        run_intake(name)
    assert "\n" not in str(info.value)
    assert stored(clean_db) == (0, 0)  # nothing read, nothing kept


def test_the_intake_flow_imports_a_file_in_the_import_folder(
    import_env: Path, clean_db: str
) -> None:
    (import_env / "today.jsonl").write_text(json.dumps(RECORD) + "\n")
    (import_env / "link.jsonl").symlink_to(import_env / "today.jsonl")  # inside: fine
    assert run_intake("today.jsonl")["created"] == 1
    assert run_intake(str(import_env / "link.jsonl"))["unchanged"] == 1


def cme(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CME_")}
    return subprocess.run([sys.executable, "-c", "from cme.cli import main; main()", *args],
                          cwd=cwd, env={**base, **env}, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize(("path", "why"), [
    ("/dev/zero", "not a regular file"),
    ("/proc/self/environ", "not a regular file"),
    ("big.jsonl", "is more than CME_IMPORT_MAX_MB (1 MB)"),
])
def test_cme_import_refuses_pseudo_files_and_oversized_files_in_one_line(
    tmp_path: Path, clean_db: str, path: str, why: str
) -> None:
    with (tmp_path / "big.jsonl").open("wb") as fh:
        fh.truncate(3 * 1024 * 1024)
    out = cme("import", path, cwd=tmp_path, CME_DATABASE_URL=clean_db, CME_IMPORT_MAX_MB="1")
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("Error: cannot import") and why in line
    assert stored(clean_db) == (0, 0)


# --- point 11: streaming ----------------------------------------------------------------


def test_an_oversized_line_is_refused_unread_and_kept_as_an_excerpt_with_its_hash(
    clean_db: str, tmp_path: Path
) -> None:
    huge = json.dumps({**RECORD, "reason": "x" * (50 * 1024 * 1024)})
    path = tmp_path / "referrals.jsonl"
    other_child = {**RECORD["child"], "surname": "Brackenbury"}  # type: ignore[dict-item]
    path.write_text(json.dumps({**RECORD, "mendix_reference": "CME-2026-930002",
                                "child": other_child}) + "\n"
                    + huge + "\n" + json.dumps(RECORD) + "\n")
    import tracemalloc

    tracemalloc.start()
    try:
        records = list(read_jsonl(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_RECORD_BYTES  # the 50 MB line was never held whole
    report = ingest_records(records, source=path.name, cfg=intake_config(db_url=clean_db))
    assert (report.created, report.quarantined, report.accounted) == (2, 1, 3)
    with Session(get_engine(clean_db)) as s:
        [kept] = s.exec(select(QuarantinedRecord)).all()
    assert kept.line_no == 2 and len(kept.raw) <= 1024
    assert kept.raw_sha256 == hashlib.sha256(huge.encode()).hexdigest()
    assert f"{len(huge)} bytes" in kept.reasons[0] and kept.raw_sha256 in kept.reasons[0]


def _letters(i: int) -> str:
    out = ""
    while True:
        out = "abcdefghijklmnopqrstuvwxyz"[i % 26] + out
        i //= 26
        if not i:
            return out


def write_referrals(path: Path, n: int, start: int = 0) -> Path:
    """``n`` distinct synthetic referrals (different children, no UPN)."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            child = {**RECORD["child"], "surname": "Streamwell" + _letters(i)}  # type: ignore[dict-item]
            fh.write(json.dumps({**RECORD, "mendix_reference": f"CME-S-{i:07d}",
                                 "child": child}) + "\n")
    return path


def test_reading_a_file_takes_the_same_memory_for_2000_or_20000_referrals(
    tmp_path: Path,
) -> None:
    import tracemalloc

    from flows.intake import BATCH, _batches

    peaks = {}
    for n in (2_000, 20_000):
        path = write_referrals(tmp_path / f"{n}.jsonl", n)
        tracemalloc.start()
        try:
            seen = sum(len(b) for b in _batches(read_jsonl(path), BATCH))
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert seen == n
    # One batch in memory at a time: ten times the records, not ten times the memory.
    assert peaks[20_000] < peaks[2_000] * 1.5 + 256 * 1024, peaks


def test_importing_more_referrals_keeps_no_more_memory(import_env: Path) -> None:
    """The whole import flow (batches as Prefect tasks, the database, the acknowledgements
    written): what stays allocated after 300 referrals and after 900 more differs by far
    less than the ~11 MB per 1,000 seen before."""
    import tracemalloc

    from flows.intake import import_file

    asyncio.run(import_file(str(write_referrals(import_env / "warm.jsonl", 60, 900_000))))
    tracemalloc.start()
    try:
        asyncio.run(import_file(str(write_referrals(import_env / "a.jsonl", 300))))
        after_300 = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        asyncio.run(import_file(str(write_referrals(import_env / "b.jsonl", 900, 300))))
        after_1200, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"traced after 300: {after_300 / 1e6:.1f} MB; after 1,200: {after_1200 / 1e6:.1f} MB;"
          f" peak importing 900: {peak / 1e6:.1f} MB")
    assert after_1200 - after_300 < 3_000_000
    assert peak - after_300 < 40_000_000  # about one batch of 500, whatever the file's size
