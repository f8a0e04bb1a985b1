"""One night at a time, one question per child (issue 18, point 7).

Two ``cme run nightly`` and an officer's ``trace-referral`` started at the same moment, as
three real processes, against the sandbox served on a loopback port (its tap counts every
request an agency received). Each agency must get exactly one request per child per round
(DWP and Border Force one formal request per child), and every request that carried a
child's details must have its check row: the disclosure audit misses nothing that was sent.

Before the night held a lock and claimed each referral's round, both nights asked every
agency about every child and kept one check row of the two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import prefect.settings
import pytest
from faultkit import (
    AGENCIES,
    Served,
    connector_env,
    read_cases,
    read_checks,
    serve,
    subjects,
    whose,
)
from sqlmodel import Session, select

from models import RoundClaim, RunLock, get_engine, locks

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TODAY = date(2026, 11, 23)  # a Monday: night one of the world
CHILDREN = 10
SEED = 41
#: Every agency answers slowly, a few requests at a time, so a night's tracing lasts several
#: seconds: long enough for processes started together to be tracing at the same time.
LATENCY_MS = 400
CONCURRENCY = 2
CHILD_TIMEOUT = 300


@dataclass(frozen=True)
class Stage:
    served: Served
    db_url: str
    env: dict[str, str]
    root: Path
    references: list[str]


@pytest.fixture
def stage(clean_db: str, prefect_harness: None, tmp_path: Path) -> Iterator[Stage]:
    from sandbox import AgencyFaults, generate_world, write_generated
    from tasks.intake import ingest_records, read_jsonl
    from tests.la_configs import intake_config

    world, referrals = generate_world(CHILDREN, SEED, today=TODAY)
    paths = write_generated(world, referrals, tmp_path / "world")
    report = ingest_records(list(read_jsonl(Path(paths["referrals"]))), source="concurrency",
                            cfg=intake_config(db_url=clean_db, channel="file"))
    assert report.created >= CHILDREN // 2, vars(report)
    with serve(Path(paths["world"]), log=tmp_path / "sandbox.log") as served:
        served.put_today(TODAY)
        served.put_faults({a: AgencyFaults(latency_ms=LATENCY_MS) for a in AGENCIES}, seed=1)
        served.clear_logs()
        env = connector_env(served.base_url, world)
        for name in AGENCIES:
            env[f"CME_{name.upper()}_MAX_CONCURRENCY"] = str(CONCURRENCY)
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "PREFECT_"))}
        env = keep | env | {
            "CME_DATABASE_URL": clean_db,
            "CME_CONNECTORS": ",".join(AGENCIES),
            "CME_NOTIFICATION_CHANNEL": "file",
            "CME_OUTBOX_DIR": str(tmp_path / "outbox"),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PREFECT_API_URL": str(prefect.settings.PREFECT_API_URL.value()),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }
        refs = [ref for ref, c in read_cases(clean_db).items()
                if c.status != "closed" and not c.duplicate]  # the cases a night traces
        yield Stage(served, clean_db, env, tmp_path, refs)


def _start(stage: Stage, label: str, code: str) -> subprocess.Popen[str]:
    home = stage.root / f"prefect-{label}"
    home.mkdir()
    out = (stage.root / f"{label}.log").open("w")
    return subprocess.Popen([sys.executable, "-c", code], cwd=stage.root,
                            env=stage.env | {"PREFECT_HOME": str(home)},
                            stdout=out, stderr=subprocess.STDOUT, text=True)


def _night(stage: Stage, label: str) -> subprocess.Popen[str]:
    return _start(stage, label, "import sys; from cme.cli import main; "
                  f"sys.argv = ['cme', 'run', 'nightly', '--today', '{TODAY}']; main()")


def _trace(stage: Stage, label: str, reference: str) -> subprocess.Popen[str]:
    return _start(stage, label, "import asyncio; from flows.adhoc import trace_referral; "
                  f"s = asyncio.run(trace_referral(reference={reference!r}, return_state=True)); "
                  "print('STATE', s.type.value, s.message)")


def _wait(proc: subprocess.Popen[str]) -> int:
    return proc.wait(timeout=CHILD_TIMEOUT)


def _log(stage: Stage, label: str) -> str:
    return (stage.root / f"{label}.log").read_text(errors="replace")


def _requests(stage: Stage) -> tuple[list[tuple[str, str, str, frozenset[str]]], set[str]]:
    """Every request that carried a child's details: (agency, path, whose, field names);
    and the references whose details left in a request nobody could attribute."""
    cases = read_cases(stage.db_url)  # a second referral of a child is linked, not traced
    people = {ref: v for ref, v in subjects(stage.db_url).items() if not cases[ref].duplicate}
    out, unattributed = [], set()
    for s in stage.served.seen():
        if not s.fields:
            continue  # a poll: only the agency's own reference travels
        matches = whose(s.fields, people)
        if len(matches) != 1:
            unattributed.add(f"{s.agency} {s.path} matches {len(matches)}")
            continue
        out.append((s.agency, s.path, matches.pop(), s.field_names))
    return out, unattributed


def test_two_nights_and_an_officers_trace_at_once_ask_each_agency_once_per_child_per_round(
        stage: Stage) -> None:
    officer_ref = stage.references[0]
    procs = {"night-a": _night(stage, "night-a"), "night-b": _night(stage, "night-b"),
             "trace": _trace(stage, "trace", officer_ref)}
    codes = {label: _wait(p) for label, p in procs.items()}

    checks = read_checks(stage.db_url)
    requests, unattributed = _requests(stage)
    assert not unattributed, unattributed
    assert requests, "no agency was asked anything: the test proves nothing"

    # The disclosure audit: every request carrying a child's details has its check row
    # (one row is one agency asked about one child in one round), which names every field
    # that went. Housing asks each council once per child and round: one row covers them.
    rows: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for c in checks:
        if c.fields_disclosed:
            rows[(c.reference, c.connector)].append(c)
    per_path = Counter((agency, path, ref) for agency, path, ref, _ in requests)
    for (agency, path, ref), n in sorted(per_path.items()):
        recorded = rows.get((ref, agency), [])
        assert recorded, f"{agency} was asked about {ref} ({path}) and no check row says so"
        # exactly one request per round: as many requests as rounds that asked
        assert n == len({c.round for c in recorded}), (
            f"{agency} got {n} requests about {ref} at {path} in "
            f"{len({c.round for c in recorded})} round(s)")
    for agency, _, ref, fields in requests:
        recorded_fields = set().union(*(set(c.fields_disclosed) for c in rows[(ref, agency)]))
        assert fields <= recorded_fields, (agency, ref, sorted(fields - recorded_fields))

    # DWP and Border Force: one formal request per child, whatever ran at once.
    for agency in ("dwp", "border_force"):
        filed = Counter(ref for a, _, ref, _ in requests if a == agency)
        traced = {c.reference for c in checks if c.connector == agency}
        assert traced, f"{agency} was never asked"
        assert set(filed.values()) == {1}, (agency, filed)

    # One night traced; the other found the night held and did nothing, saying why.
    nights = {label: codes[label] for label in ("night-a", "night-b")}
    assert sorted(nights.values()) == [0, 1], {k: (v, _log(stage, k)[-1500:])
                                               for k, v in nights.items()}
    refused = next(k for k, v in nights.items() if v == 1)
    assert "another nightly run is tracing" in _log(stage, refused), _log(stage, refused)

    # Nothing is left held: the next night can start.
    with Session(get_engine(stage.db_url)) as s:
        assert not s.exec(select(RoundClaim)).all()
        assert all(lock.owner is None for lock in s.exec(select(RunLock)))
    # The officer's trace traced the case (once), or said another run was tracing it.
    trace = _log(stage, "trace")
    assert codes["trace"] == 0 and ("STATE COMPLETED" in trace or (
        "STATE FAILED" in trace and "being traced by another run" in trace)), trace


def test_a_sigkilled_night_does_not_block_the_next_one(stage: Stage) -> None:
    night = _night(stage, "killed")
    deadline = time.monotonic() + 120
    while not stage.served.exchanges():  # tracing has begun: the lock is held
        assert night.poll() is None, _log(stage, "killed")
        assert time.monotonic() < deadline, "the night never asked an agency"
        time.sleep(0.1)
    with Session(get_engine(stage.db_url)) as s:
        held = s.exec(select(RunLock).where(RunLock.name == locks.NIGHT)).one()
        assert held.owner is not None and held.pid == night.pid
        assert s.exec(select(RoundClaim)).all()  # the referrals' rounds are claimed
    night.send_signal(signal.SIGKILL)
    night.wait(timeout=30)

    # Its process is gone from this machine: the next night takes the night over at once
    # (no waiting for the lease) and traces what the killed one claimed.
    started = time.monotonic()
    again = _night(stage, "after")
    assert _wait(again) == 0, _log(stage, "after")
    assert time.monotonic() - started < locks.LEASE.total_seconds()
    with Session(get_engine(stage.db_url)) as s:
        assert not s.exec(select(RoundClaim)).all()
        assert s.exec(select(RunLock).where(RunLock.name == locks.NIGHT)).one().owner is None
    traced = {c.reference for c in read_checks(stage.db_url)}
    assert traced, "the night after the kill traced nothing"


def test_a_lock_held_on_another_machine_stands_until_its_lease_runs_out(clean_db: str) -> None:
    now = datetime.now(UTC)
    with Session(get_engine(clean_db)) as s:
        s.add(RunLock(name=locks.NIGHT, owner="run-elsewhere", host="another-machine",
                      pid=1, acquired_at=now - timedelta(minutes=3),
                      lease_until=now + timedelta(minutes=7)))
        s.commit()
    took, holder = locks.acquire_lock(clean_db, locks.NIGHT, "run-here")
    assert not took and holder.owner == "run-elsewhere"
    assert "another-machine" in holder.describe()
    # Its heartbeat stopped (the machine died): once the lease has run out, it is taken over.
    with Session(get_engine(clean_db)) as s:
        row = s.exec(select(RunLock)).one()
        row.lease_until = now - timedelta(seconds=1)
        s.add(row)
        s.commit()
    took, holder = locks.acquire_lock(clean_db, locks.NIGHT, "run-here")
    assert took and holder.owner == "run-here"
    # ... and only one of two runs racing for it gets it.
    took_again, _ = locks.acquire_lock(clean_db, locks.NIGHT, "run-third")
    assert not took_again
    locks.release_lock(clean_db, locks.NIGHT, "run-here")
    assert locks.acquire_lock(clean_db, locks.NIGHT, "run-third")[0]


def test_a_referrals_round_is_claimed_by_one_run_at_a_time(clean_db: str) -> None:
    from models import Referral
    from sandbox import generate_world
    from tasks.intake import ingest_records
    from tests.la_configs import intake_config

    _, referrals = generate_world(3, SEED, today=TODAY)
    ingest_records([(n, json.dumps(r)) for n, r in enumerate(referrals, 1)], source="claims",
                   cfg=intake_config(db_url=clean_db, channel="file"))
    with Session(get_engine(clean_db)) as s:
        ids = [r.id or 0 for r in s.exec(select(Referral))]
    assert ids
    assert locks.claim_rounds(clean_db, ids, "night") == ids
    assert locks.claim_rounds(clean_db, ids, "officer") == []  # the night is asking
    assert locks.claim_rounds(clean_db, ids, "night") == ids  # its own, still
    locks.release_claims(clean_db, "night")
    assert locks.claim_rounds(clean_db, ids, "officer") == ids
