"""The crash tests' kit: a small synthetic world, the nightly run in a child process that a
kill hook can SIGKILL (``crash_child.py``), the outside world's receiving ends (an SMTP
server, a GOV.UK Notify stand-in, the file outbox) and a normalised dump of the database.

Imported by name (test folders are not packages).
"""

from __future__ import annotations

import asyncio
import email
import inspect
import json
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlmodel import Session, SQLModel, col, select

from models import CaseEvent, Check, Notification, NotificationStatus, Referral, get_engine
from models.enums import Template

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHILD = HERE / "crash_child.py"
sys.path.insert(0, str(HERE))  # crash_child's POINTS, without running it
from crash_child import POINTS  # noqa: E402

BUILTINS = "other_la,housing,lpd,dwp,border_force"
TODAY = date(2026, 11, 23)  # a Monday: night one of the world
CHILDREN = 24
WORLD_SEED = 11
CHUNK_SIZE = 9  # three chunks: kills between chunks as well as inside one
NOTIFY_KEY = (
    "cme_crash-26785a09-ab16-4eb0-8407-a37497a57506-3d844edf-8d35-48ac-975b-e847b4f122b0"
)
#: A safety net for a hung child, not a timing assertion: a night here takes seconds.
CHILD_TIMEOUT = 600

#: The points that only exist on one channel.
FILE_ONLY = frozenset({"file_unrenamed"})
DISPATCH_POINTS = frozenset({"send_before", "send_after", "file_unrenamed"})


# --- the world ---------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    root: Path
    world_path: Path
    referrals_path: Path
    today: date = TODAY


def make_world(root: Path, *, children: int = CHILDREN, seed: int = WORLD_SEED) -> World:
    from sandbox import generate_world, write_generated

    world, referrals = generate_world(children, seed, today=TODAY)
    paths = write_generated(world, referrals, root / "world")
    return World(root, Path(paths["world"]), Path(paths["referrals"]))


def reset_db(db_url: str) -> None:
    """Empty every table (the schema stays): the state before the trial's intake."""
    import models.tables  # noqa: F401

    with get_engine(db_url).begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


def import_referrals(world: World, db_url: str, channel: str) -> None:
    """The school referrals, taken in without dispatching: the night sends the
    acknowledgements with everything else (so a crash can land among them too)."""
    from tasks.intake import ingest_records, read_jsonl
    from tests.la_configs import intake_config

    report = ingest_records(list(read_jsonl(world.referrals_path)), source="crash-trial",
                            cfg=intake_config(db_url=db_url, channel=channel))
    assert report.created >= CHILDREN // 2, vars(report)


# --- the receiving ends ------------------------------------------------------------------


@dataclass
class SmtpInbox:
    """What an SMTP server accepted (aiosmtpd, on a loopback port, in this process)."""

    host: str
    port: int
    messages: list[bytes] = field(default_factory=list)

    def message_ids(self) -> Counter[str]:
        return Counter(_message_id(m) for m in self.messages)


def _message_id(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=default_policy)["Message-ID"]).strip()


@contextmanager
def smtp_server() -> Iterator[SmtpInbox]:
    from aiosmtpd.controller import Controller

    inbox = SmtpInbox("127.0.0.1", 0)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            inbox.messages.append(bytes(envelope.original_content))
            return "250 Message accepted for delivery"

    inbox.port = _free_port()
    controller = Controller(Handler(), hostname=inbox.host, port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


@dataclass
class NotifyLog:
    """Every request the GOV.UK Notify stand-in saw, in order: ("send" | "lookup", ref)."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # reference → notification id
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def sends(self) -> Counter[str]:
        return Counter(ref for kind, ref in self.requests if kind == "send")


@contextmanager
def notify_server() -> Iterator[NotifyLog]:
    """Enough of GOV.UK Notify's API for the channel: ``POST /v2/notifications/email``
    (201 with an id; a reference sent twice is accepted twice, as Notify would deliver it
    twice) and ``GET /v2/notifications?reference=``."""
    log = NotifyLog()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                self._json(403, {"errors": [{"error": "AuthError"}]})
                return
            size = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(size)
            try:
                payload = json.loads(raw) if len(raw) == size else None
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or not payload.get("reference"):
                # A request cut short (the sender was killed mid-request, while another send
                # was in flight) never reaches Notify as a notification: not a delivery.
                self._json(400, {"errors": [{"error": "BadRequestError"}]})
                return
            ref = str(payload["reference"])
            with log.lock:
                log.requests.append(("send", ref))
                nid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ref}#{len(log.requests)}"))
                log.accepted.setdefault(ref, nid)
            self._json(201, {"id": nid, "reference": ref})

        def do_GET(self) -> None:  # noqa: N802
            ref = parse_qs(urlparse(self.path).query).get("reference", [""])[0]
            with log.lock:
                log.requests.append(("lookup", ref))
                nid = log.accepted.get(ref)
            found = [{"id": nid, "reference": ref}] if nid else []
            self._json(200, {"notifications": found})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    log.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield log
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class FileState:
    """A file in the outbox: its identity on disk (a rewrite changes it)."""

    inode: int
    mtime_ns: int
    size: int


def outbox_files(outbox: Path) -> dict[str, FileState]:
    """Every file in the outbox folder, hidden ones included."""
    if not outbox.is_dir():
        return {}
    out = {}
    for p in sorted(outbox.iterdir()):
        st = p.stat()
        out[p.name] = FileState(st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def outbox_message_ids(outbox: Path) -> Counter[str]:
    """Message-IDs of the ``*.eml`` files (hidden ones included: a mail pickup folder or a
    script reading ``*.eml`` would take those too)."""
    return Counter(_message_id(p.read_bytes()) for p in outbox.glob("*.eml"))


# --- the night in a child process ----------------------------------------------------------


@dataclass
class Trial:
    """The settings of one trial's runs (database, channel, where messages go)."""

    world: World
    db_url: str
    channel: str
    workdir: Path
    prefect_api_url: str
    smtp: SmtpInbox | None = None
    notify: NotifyLog | None = None

    @property
    def outbox(self) -> Path:
        return self.workdir / "outbox"

    def settings(self) -> dict[str, str]:
        env = {
            "CME_DATABASE_URL": self.db_url,
            "CME_SANDBOX_WORLD": str(self.world.world_path),
            "CME_CONNECTORS": BUILTINS,
            "CME_CHUNK_SIZE": str(CHUNK_SIZE),
            "CME_NOTIFICATION_CHANNEL": self.channel,
            "CME_OUTBOX_DIR": str(self.outbox),
        }
        if self.smtp is not None:
            env |= {"CME_SMTP_HOST": self.smtp.host, "CME_SMTP_PORT": str(self.smtp.port)}
        if self.notify is not None:
            env |= {
                "CME_NOTIFY_API_KEY": NOTIFY_KEY,
                "CME_NOTIFY_BASE_URL": self.notify.url,
                "CME_NOTIFY_TEMPLATE_IDS": json.dumps(
                    {t.value: str(uuid.uuid5(uuid.NAMESPACE_DNS, t.value)) for t in Template}
                ),
            }
        return env

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("CME_", "PREFECT_", "CRASHKIT_"))}
        home = self.workdir / "prefect-home"
        home.mkdir(parents=True, exist_ok=True)
        return keep | self.settings() | {
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_HOME": str(home),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def run_night(self, *, point: str | None = None, at: int = 0, counts: Path | None = None,
                  label: str = "night") -> subprocess.CompletedProcess[str]:
        """``cme run nightly --today …`` in a child process, killed at ``point`` #``at``."""
        env = self.env()
        if point:
            env |= {"CRASHKIT_POINT": point, "CRASHKIT_AT": str(at)}
        if counts is not None:
            env["CRASHKIT_COUNTS"] = str(counts)
        proc = subprocess.run(
            [sys.executable, str(CHILD), "--today", self.world.today.isoformat()],
            cwd=self.workdir, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
            check=False,
        )
        (self.workdir / f"{label}.log").write_text(
            f"rc={proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}\n"
        )
        return proc


def killed(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == -signal.SIGKILL


def tail(proc: subprocess.CompletedProcess[str], n: int = 3000) -> str:
    return f"rc={proc.returncode}\nstdout: {proc.stdout[-n:]}\nstderr: {proc.stderr[-n:]}"


# --- what the database says ------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The database, normalised: ids and timestamps out, references and values in."""

    referrals: dict[str, tuple[Any, ...]]
    checks: list[tuple[Any, ...]]
    notifications: dict[str, tuple[Any, ...]]
    outbox_status: dict[str, str]
    last_errors: dict[str, str | None]
    events: Counter[tuple[str, str, str]]


def snapshot(db_url: str) -> Snapshot:
    with Session(get_engine(db_url)) as s:
        refs = {r.id: r.mendix_reference for r in s.exec(select(Referral))}
        referrals = {
            r.mendix_reference: (
                r.status.value, r.outcome.value if r.outcome else None, r.tracing_rounds,
                r.next_check_due, r.decision_rule, r.acknowledged_at is not None,
            )
            for r in s.exec(select(Referral))
        }
        checks = sorted(
            (refs[c.referral_id], c.connector, c.round, c.outcome.value, c.error_kind,
             tuple(sorted(c.fields_disclosed or [])))
            for c in s.exec(select(Check))
        )
        notes = list(s.exec(select(Notification).order_by(col(Notification.id))))
        notifications = {
            n.idempotency_key: (n.template.value, n.status.value, n.recipient,
                                refs.get(n.referral_id) if n.referral_id else None)
            for n in notes
        }
        events = Counter(
            (refs[e.referral_id], e.kind, e.text) for e in s.exec(select(CaseEvent))
        )
    return Snapshot(
        referrals=referrals, checks=checks, notifications=notifications,
        outbox_status={k: v[1] for k, v in notifications.items()},
        last_errors={n.idempotency_key: n.last_error for n in notes}, events=events,
    )


@dataclass(frozen=True)
class Baseline:
    """The uninterrupted night: the database it leaves and how often it reached each point."""

    snap: Snapshot
    reached: dict[str, int]
    #: How long the uninterrupted child ran: the range the extended trials' timer kills
    #: are drawn from (never asserted on).
    night_ms: int


def keys_with_status(snap: Snapshot, status: NotificationStatus) -> set[str]:
    return {k for k, v in snap.outbox_status.items() if v == status.value}


def differences(expected: Snapshot, actual: Snapshot, *, ignore_keys: set[str] = frozenset(),
                ignore_acknowledged: set[str] = frozenset()) -> list[str]:
    """Human-readable differences (empty: equal).

    ``ignore_keys``: outbox rows compared without their status (SMTP rows a crash left with
    an unknown outcome). ``ignore_acknowledged``: referrals whose acknowledgement is such a
    row, so not recorded as acknowledged: compared without that record.
    """

    def referral(ref: str, row: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if row is None or ref not in ignore_acknowledged:
            return row
        status = "received" if row[0] in ("received", "acknowledged") else row[0]
        return (status, *row[1:5])

    def events(snap: Snapshot) -> Counter[tuple[str, str, str]]:
        return Counter({e: n for e, n in snap.events.items()
                        if not (e[0] in ignore_acknowledged and e[1] == "acknowledged")})

    out: list[str] = []
    for ref in sorted(set(expected.referrals) | set(actual.referrals)):
        a = referral(ref, expected.referrals.get(ref))
        b = referral(ref, actual.referrals.get(ref))
        if a != b:
            out.append(f"referral {ref}: expected {a}, got {b}")
    ec, ac = Counter(expected.checks), Counter(actual.checks)
    for row in sorted((ec - ac) + (ac - ec)):
        where = "missing" if ec[row] > ac[row] else "extra"
        out.append(f"check {where}: {row}")
    for key in sorted(set(expected.notifications) | set(actual.notifications)):
        a2, b2 = expected.notifications.get(key), actual.notifications.get(key)
        if key in ignore_keys and a2 and b2:
            a2, b2 = a2[:1] + a2[2:], b2[:1] + b2[2:]
        if a2 != b2:
            out.append(f"notification {key}: expected {a2}, got {b2}")
    ee, ae = events(expected), events(actual)
    for ev in sorted((ee - ae) + (ae - ee)):
        where = "missing" if ee[ev] > ae[ev] else "extra"
        out.append(f"event {where}: {ev}")
    return out


# --- choosing where to kill ----------------------------------------------------------------


def choose_at(seed: int, point: str, reached: dict[str, int]) -> int:
    """The seeded arrival at ``point`` to kill on (1-based), among those an uninterrupted
    night makes."""
    n = reached.get(point, 0)
    if n < 1:
        raise AssertionError(f"an uninterrupted night never reaches {point}: {reached}")
    return random.Random(f"{seed}:{point}").randint(1, n)


def points_for(channel: str) -> tuple[str, ...]:
    return tuple(p for p in POINTS if channel == "file" or p not in FILE_ONLY)


# --- the dispatch after the claim lease -------------------------------------------------------


@contextmanager
def settings_env(values: dict[str, str]) -> Iterator[None]:
    """This process's ``CME_*`` environment exactly ``values`` for a while."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CME_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(values)
    try:
        yield
    finally:
        for k in values:
            os.environ.pop(k, None)
        os.environ.update(saved)


def claim_lease() -> timedelta:
    """How long a dispatcher's claim on a row stands (the production default)."""
    from notifications import dispatch_pending

    lease = inspect.signature(dispatch_pending).parameters["claim_timeout"].default
    assert isinstance(lease, timedelta)
    return lease


def dispatch_after_lease(trial: Trial) -> dict[str, int]:
    """The next dispatch once the crashed run's claims have lapsed — in production the intake
    flow's, a quarter of an hour later — with the flows' own channel settings; then the
    acknowledgements are recorded, as every dispatch step does."""
    from flows._config import dispatch_config
    from notifications import dispatch_pending
    from tasks.dispatch import channel_from_config, mark_acknowledged

    with settings_env(trial.settings()):
        cfg = dispatch_config()
    channel = channel_from_config(cfg.channel, **cfg.channel_options)
    later = datetime.now(UTC) + claim_lease() + timedelta(minutes=1)
    report = asyncio.run(dispatch_pending(cfg.db_url, channel, now=later))
    counts = {k: int(v) for k, v in vars(report).items()}
    counts["acknowledged"] = mark_acknowledged(cfg.db_url)
    return counts
