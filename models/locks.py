"""One night at a time, one question per child: locks and claims held in the case database.

Two runs that trace at once would ask every agency twice about the same child (DWP and Border
Force would get two formal requests) and keep one check row of the two. So (README, "One
night at a time"):

- the night holds the ``nightly`` lock (:func:`acquire_lock`) for as long as it runs: a second
  night finds it held and does nothing;
- every run, the night or an officer's ``trace-referral``, claims a referral's round
  (:func:`claim_rounds`) before asking anyone about that child, and only asks about the
  referrals it claimed.

Both work the same on PostgreSQL and SQLite: a row is taken with a conditional UPDATE (or an
INSERT that a primary key refuses), so of two runs racing exactly one gets it. A holder
renews its lease while it lives (:class:`Heartbeat`); a lock or claim whose lease ran out, or
whose process is gone from this machine, is taken over, so a SIGKILLed night never blocks
the next one for longer than the lease.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from models.db import get_engine
from models.tables import Referral, RoundClaim, RunLock

__all__ = [
    "HEARTBEAT",
    "LEASE",
    "NIGHT",
    "Heartbeat",
    "Holder",
    "acquire_lock",
    "claim_rounds",
    "release_claims",
    "release_lock",
    "renew",
]

#: The night's lock.
NIGHT = "nightly"
#: How long a lock or claim stands without being renewed. Generous, because only a holder
#: on another machine that died waits it out (a dead process on this one is seen at once).
LEASE = timedelta(minutes=10)
#: How often a holder renews (well inside the lease, so a busy event loop or a slow commit
#: never lets a live holder's lease run out).
HEARTBEAT = timedelta(seconds=60)

_BATCH = 500  # ids per statement: well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: a run id, where it runs, since when and until when."""

    owner: str | None
    host: str | None
    pid: int | None
    acquired_at: datetime | None
    lease_until: datetime | None

    def describe(self) -> str:
        since = self.acquired_at.strftime("%Y-%m-%d %H:%M UTC") if self.acquired_at else "?"
        until = self.lease_until.strftime("%H:%M UTC") if self.lease_until else "?"
        return f"run {self.owner} on {self.host} (pid {self.pid}) since {since}, lease to {until}"


def _now() -> datetime:
    return datetime.now(UTC)


def _host() -> str:
    return socket.gethostname()[:255]


def _gone(host: str | None, pid: int | None) -> bool:
    """True when the holder ran on this machine and its process no longer exists."""
    if host != _host() or pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        return False
    return False


def _stale(owner: str | None, host: str | None, pid: int | None,
           lease_until: datetime | None, now: datetime) -> bool:
    return owner is None or lease_until is None or lease_until < now or _gone(host, pid)


def acquire_lock(db_url: str, name: str, owner: str, *, lease: timedelta = LEASE
                 ) -> tuple[bool, Holder]:
    """Take lock ``name`` for the run ``owner``: ``(True, me)``, or ``(False, holder)`` when
    another live run holds it. Atomic on both databases: of two runs racing, one wins."""
    engine = get_engine(db_url)
    # Each write transaction starts with its write, and reads go in transactions of their
    # own: SQLite (WAL) refuses to turn a reading transaction into a writing one when another
    # process wrote meanwhile, where a transaction that writes first waits its turn.
    with engine.begin() as conn:
        _insert_ignoring(conn, RunLock, [{"name": name}])
    now = _now()
    row = _lock_row(engine, name)
    if row.owner != owner and not _stale(row.owner, row.host, row.pid, row.lease_until, now):
        return False, row
    # Compare-and-set on what was read: if the holder renewed (or another run took the lock)
    # since, nothing is updated and this run does not hold it.
    same = [col(RunLock.name) == name]
    same.append(col(RunLock.owner).is_(None) if row.owner is None
                else col(RunLock.owner) == row.owner)
    same.append(col(RunLock.lease_until).is_(None)
                if row.lease_until is None else col(RunLock.lease_until) == row.lease_until)
    me = Holder(owner, _host(), os.getpid(), now, now + lease)
    with engine.begin() as conn:
        taken = conn.execute(update(RunLock).where(*same).values(
            owner=owner, host=me.host, pid=me.pid, acquired_at=now, lease_until=me.lease_until))
    if taken.rowcount == 1:
        return True, me
    return False, _lock_row(engine, name)


def _lock_row(engine: Engine, name: str) -> Holder:
    with engine.connect() as conn:
        row = conn.execute(select(RunLock).where(col(RunLock.name) == name)).one()
    return Holder(row.owner, row.host, row.pid, row.acquired_at, row.lease_until)


def release_lock(db_url: str, name: str, owner: str) -> None:
    """Give lock ``name`` back, if ``owner`` still holds it."""
    with get_engine(db_url).begin() as conn:
        conn.execute(update(RunLock)
                     .where(col(RunLock.name) == name, col(RunLock.owner) == owner)
                     .values(owner=None, host=None, pid=None, acquired_at=None,
                             lease_until=None))


def claim_rounds(db_url: str, referral_ids: Sequence[int], owner: str, *,
                 lease: timedelta = LEASE) -> list[int]:
    """Claim the current tracing round of each referral for the run ``owner``; the ids it now
    holds (those already its own included), in the order given. A referral whose round
    another live run holds is left out: that run asks the agencies about it."""
    engine = get_engine(db_url)
    host, pid = _host(), os.getpid()
    held: set[int] = set()
    for i in range(0, len(referral_ids), _BATCH):
        batch = list(referral_ids[i:i + _BATCH])
        now = _now()
        with engine.connect() as conn:  # reads apart from the writes: see acquire_lock
            others = conn.execute(
                select(col(RoundClaim.owner), col(RoundClaim.host), col(RoundClaim.pid),
                       col(RoundClaim.lease_until))
                .where(col(RoundClaim.referral_id).in_(batch),
                       col(RoundClaim.owner) != owner).distinct()).all()
            rounds = conn.execute(select(col(Referral.id), col(Referral.tracing_rounds))
                                  .where(col(Referral.id).in_(batch))).all()
        dead = {o for o, h, p, until in others if _stale(o, h, p, until, now)}
        with engine.begin() as conn:
            if dead:
                conn.execute(delete(RoundClaim).where(
                    col(RoundClaim.referral_id).in_(batch),
                    col(RoundClaim.owner).in_(sorted(dead))))
            _insert_ignoring(conn, RoundClaim, [
                {"referral_id": rid, "round": n + 1, "owner": owner, "host": host, "pid": pid,
                 "claimed_at": now, "lease_until": now + lease} for rid, n in rounds])
            held.update(conn.execute(select(col(RoundClaim.referral_id)).where(
                col(RoundClaim.referral_id).in_(batch),
                col(RoundClaim.owner) == owner)).scalars())
    return [rid for rid in referral_ids if rid in held]


def release_claims(db_url: str, owner: str, referral_ids: Iterable[int] | None = None) -> None:
    """Give back the run's claims (all of them, or those of ``referral_ids``)."""
    with get_engine(db_url).begin() as conn:
        q = delete(RoundClaim).where(col(RoundClaim.owner) == owner)
        if referral_ids is not None:
            q = q.where(col(RoundClaim.referral_id).in_(list(referral_ids)))
        conn.execute(q)


def renew(db_url: str, owner: str, lock: str | None = None, *, lease: timedelta = LEASE
          ) -> bool:
    """Push the run's lease on its claims (and on ``lock``) forward; False if it no longer
    holds ``lock`` (taken over: its lease had run out)."""
    until = _now() + lease
    with get_engine(db_url).begin() as conn:
        conn.execute(update(RoundClaim).where(col(RoundClaim.owner) == owner)
                     .values(lease_until=until))
        if lock is None:
            return True
        res = conn.execute(update(RunLock)
                           .where(col(RunLock.name) == lock, col(RunLock.owner) == owner)
                           .values(lease_until=until))
        return bool(res.rowcount == 1)


class Heartbeat:
    """Renew a run's lock and claims every :data:`HEARTBEAT` from a thread of its own, so a
    busy event loop in the flow never lets the lease run out while the run lives."""

    def __init__(self, db_url: str, owner: str, lock: str | None = None,
                 every: timedelta = HEARTBEAT) -> None:
        self.db_url, self.owner, self.lock, self.every = db_url, owner, lock, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{owner}",
                                        daemon=True)
        self.lost = False

    def _run(self) -> None:
        while not self._stop.wait(self.every.total_seconds()):
            try:
                if not renew(self.db_url, self.owner, self.lock):
                    self.lost = True
            except Exception:  # noqa: BLE001, S112 - a failed renewal is retried next beat
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _insert_ignoring(conn: Connection, table: type, rows: list[dict[str, object]]) -> None:
    """INSERT rows, skipping those whose primary key is taken (both databases)."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    t = table.__table__  # type: ignore[attr-defined]
    ins = postgresql.insert(t) if conn.dialect.name == "postgresql" else sqlite.insert(t)
    conn.execute(ins.values(rows).on_conflict_do_nothing())

