"""The fault harness: the sandbox served on a loopback port, a tap that sees every exchange,
the fault plan (kind × agency × night) and snapshots of what each night left behind.

Imported by name (test folders are not packages). Synthetic people only.
"""

from __future__ import annotations

import base64
import json
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import AgencyFaults, FaultProfile, Sandbox, SeenRequest, World, agency_of, load_world
from sandbox.asgi import read_body, replay_body

#: The built-in connectors, and the sandbox's fault key for each (the same names).
AGENCIES = ("other_la", "housing", "lpd", "dwp", "border_force")
#: Fault kinds the sandbox throws at random (per request), each at about 30 %.
RANDOM_KINDS = ("5xx", "malformed", "429_seconds", "truncated", "429_http_date", "timeout")
#: Fault kinds that last the whole night.
NIGHTLONG_KINDS = ("refused", "outage")
KINDS = RANDOM_KINDS + NIGHTLONG_KINDS
#: What one agency suffers on one night: two random kinds at once, or one night-long one.
#: (Retry-After never shares a night with the short read timeout: a stalled client could
#: then time out reading the 429 itself and retry at once, which says nothing about it.)
SLOTS: tuple[tuple[str, ...], ...] = (
    ("timeout", "5xx"), ("429_seconds", "truncated"), ("429_http_date", "malformed"),
    ("refused",), ("outage",),
)
#: Error codes each fault kind may leave on a check row (``combine`` keeps one per check).
ERROR_CODES = {
    "5xx": {"http_500", "http_502", "http_503"},
    "malformed": {"malformed_response"},
    "429_seconds": {"rate_limited"},
    "429_http_date": {"rate_limited"},
    "timeout": {"timeout", "http_504"},  # the client gave up, or the agency's gateway did
    "truncated": {"connection_error"},
    "refused": {"connection_error", "circuit_open"},
    "outage": {"http_503", "circuit_open"},
}

RATE = 0.3
CTF_RATE = 0.5  # share of the LPD's good answers the tap corrupts on its "malformed" night
#: The second kind of a pair is rolled only when the first did not fire: this keeps it ~30 %.
SECOND_RATE = round(RATE / (1 - RATE), 2)
#: The connectors' read timeout (s). Generous: the nightly flow's event loop (one for every
#: agency) was measured stalling for up to ~1.7 s on a busy 2-core machine, and a stall must
#: not pass for an agency timing out.
TIMEOUT = 4.0
#: ... for the agency whose fault tonight is timeouts: short, so hung requests cost little;
#: a stall can only add more timeouts there, the fault it is meant to suffer anyway.
SHORT_TIMEOUT = 1.0
HANG = 3.0  # how long a sandbox "timeout" hangs before its 504 (s): longer than SHORT_TIMEOUT
RETRY_AFTER_SECONDS = 1
RETRY_AFTER_DATE = 2  # an HTTP-date has whole seconds: 2 s ahead is always more than 1 s
MAX_ATTEMPTS = 2
CONCURRENCY = 40  # in flight per connector: every check of a night in one wave
#: Consecutive transient failures that open a circuit, for agencies that are only flaky: a
#: stalled event loop can time out everything in flight at once, and a pair of faults fails
#: about half the attempts. (The breaker is exercised where an agency is down all night.)
THRESHOLD = 100
DEAD_THRESHOLD = 3  # ... for an agency that is down all night
DEAD_CONCURRENCY = 4  # in-flight cap of an agency that is down all night
#: Calls a dead agency may see in a night: the threshold, plus what was already in flight
#: when the circuit opened.
DEAD_CALLS = DEAD_THRESHOLD + DEAD_CONCURRENCY - 1
COUNCILS = ("winchester",)  # asked besides the councils the world's children live in


def plan(night: int) -> dict[str, tuple[str, ...]]:
    """Which faults each agency suffers on ``night`` (empty: none).

    Nights 0-4 rotate the five slots over the five agencies (a Latin square: every agency
    meets every fault kind, each night one agency is down and one refuses connections while
    the other three answer through random faults); night 5 is clean (recovery).
    """
    if night < len(SLOTS):
        return {a: SLOTS[(i + night) % len(SLOTS)] for i, a in enumerate(AGENCIES)}
    return {a: () for a in AGENCIES}


NIGHTS = len(SLOTS) + 1


def agency_faults(kinds: tuple[str, ...]) -> AgencyFaults:
    """The sandbox's fault profile for one agency suffering ``kinds``. The sandbox rolls
    timeout, then 429, then 5xx, then malformed, then truncated, each only if the ones before
    did not fire: the second kind of a pair gets ``SECOND_RATE`` so that it, too, strikes
    about 30 % of requests."""
    order = ("timeout", "429_seconds", "429_http_date", "5xx", "malformed", "truncated")
    rates = dict(zip(sorted((k for k in kinds if k in order), key=order.index),
                     (RATE, SECOND_RATE), strict=False))
    f: dict[str, Any] = {"outage": "outage" in kinds}
    if "timeout" in rates:
        f.update(timeout_rate=rates["timeout"], timeout_seconds=HANG)
    if "429_seconds" in rates:
        f.update(rate_limit_rate=rates["429_seconds"], retry_after=RETRY_AFTER_SECONDS)
    if "429_http_date" in rates:
        f.update(rate_limit_rate=rates["429_http_date"], retry_after=RETRY_AFTER_DATE,
                 retry_after_http_date=True)
    if "5xx" in rates:
        f["error_rates"] = {code: rates["5xx"] / 3 for code in (500, 502, 503)}
    if "malformed" in rates:
        f["malformed_rate"] = rates["malformed"]
    if "truncated" in rates:
        f["truncated_rate"] = rates["truncated"]
    return AgencyFaults(**f)  # "refused": the requests never reach the sandbox


# --------------------------------------------------------------------------- the tap


@dataclass
class Exchange:
    """One agency request as the wire saw it, and the answer it got."""

    agency: str
    method: str
    path: str
    body: bytes
    at: float  # the server's time.monotonic() on arrival
    status: int | None = None
    retry_after: str | None = None
    declared_length: int | None = None
    sent_length: int = 0
    corrupted: str | None = None
    response: bytes = b""

    @property
    def key(self) -> tuple[str, str, bytes]:
        """Same key, same enquiry: a retry repeats method, path and body exactly."""
        return (self.method, self.path, self.body)

    @property
    def truncated(self) -> bool:
        return self.declared_length is not None and self.sent_length < self.declared_length

    @property
    def malformed(self) -> bool:
        """A 200 whose whole body arrived but is not what the agency's wire API speaks."""
        if self.status != 200 or self.truncated:
            return False
        if self.agency == "lpd" and self.path.endswith("/lost-pupils/search"):
            return self.corrupted is not None or not self.response.startswith(b"<?xml")
        try:
            json.loads(self.response)
        except ValueError:
            return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {"agency": self.agency, "method": self.method, "path": self.path,
                "body": base64.b64encode(self.body).decode(), "at": self.at,
                "status": self.status, "retry_after": self.retry_after,
                "declared_length": self.declared_length, "sent_length": self.sent_length,
                "corrupted": self.corrupted,
                "response": base64.b64encode(self.response).decode()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Exchange:
        return cls(**{**d, "body": base64.b64decode(d["body"]),
                      "response": base64.b64decode(d["response"])})


_CTF_CORRUPTIONS = ("cut", "count", "entity", "root")


def corrupt_ctf(body: bytes, how: str) -> bytes:
    """A CTF search answer made unusable in one of four ways."""
    text = body.decode("utf-8")
    if how == "cut":  # not well-formed: the root element never closes
        return body[: max(1, len(body) // 2)]
    if how == "count":  # well-formed, but the match count disagrees with the CTFs
        m = re.search(r'matches="(\d+)"', text)
        n = int(m.group(1)) if m else 0
        return re.sub(r'matches="\d+"', f'matches="{n + 1}"', text, count=1).encode()
    if how == "entity":  # an entity declaration: defusedxml must refuse it
        decl = '<!DOCTYPE LostPupilSearch [<!ENTITY pupil "x">]>'
        return text.replace("?>", "?>" + decl, 1).encode()
    # a well-formed XML document that is not a lost-pupil search answer
    return text.replace("LostPupilSearch", "LearnerSearch").encode()


async def _json_reply(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Tap:
    """Outermost ASGI wrapper around the sandbox: logs every agency exchange with the answer
    it got, and corrupts a share of the Lost Pupil Database's 200 answers (malformed CTF
    XML) — the sandbox's own ``malformed_rate`` sends broken JSON to every agency.

    Its control plane: ``GET|DELETE /_tap/exchanges``, ``PUT /_tap/config``
    (``{"ctf_rate": 0.3, "seed": 1}``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []
        self.ctf_rate = 0.0
        self._rng = random.Random(0)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/_tap/exchanges" and method == "GET":
            await _json_reply(send, 200, [e.to_json() for e in self.exchanges])
        elif path == "/_tap/exchanges" and method == "DELETE":
            self.exchanges.clear()
            await _json_reply(send, 200, {"status": "ok"})
        elif path == "/_tap/config" and method == "PUT":
            cfg = json.loads(await read_body(receive))
            self.ctf_rate = float(cfg["ctf_rate"])
            self._rng = random.Random(int(cfg["seed"]))
            await _json_reply(send, 200, {"status": "ok"})
        else:
            await _json_reply(send, 404, {"error": "unknown tap endpoint"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/_tap/"):
            await self._control(scope, receive, send)
            return
        agency = agency_of(scope.get("path", "")) if scope["type"] == "http" else None
        if agency is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        ex = Exchange(agency, scope["method"], scope["path"], body, time.monotonic())
        self.exchanges.append(ex)
        replay = replay_body(body, then=receive)  # then the real connection: a disconnect

        corrupt = (agency == "lpd" and scope["path"].endswith("/lost-pupils/search")
                   and self.ctf_rate > 0 and self._rng.random() < self.ctf_rate)
        how = self._rng.choice(_CTF_CORRUPTIONS) if corrupt else None
        held: list[Message] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                ex.status = message["status"]
                headers = dict(message.get("headers", []))
                ra = headers.get(b"retry-after")
                ex.retry_after = ra.decode() if ra is not None else None
                cl = headers.get(b"content-length")
                ex.declared_length = int(cl) if cl is not None else None
                if how is not None and ex.status == 200:
                    held.append(message)
                    return
            elif message["type"] == "http.response.body" and held:
                new = corrupt_ctf(message.get("body", b""), how or "cut")
                ex.corrupted = how
                ex.declared_length = ex.sent_length = len(new)
                ex.response = new
                start = held.pop()
                headers = [(k, v) for k, v in start.get("headers", [])
                           if k != b"content-length"]
                headers.append((b"content-length", str(len(new)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": new, "more_body": False})
                return
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                ex.sent_length += len(chunk)
                ex.response += chunk
            await send(message)

        await self.app(scope, replay, watch)


def build_app(world_path: str) -> Tap:
    """The sandbox for ``world_path`` behind the tap (what ``faultserver.py`` serves)."""
    return Tap(Sandbox(load_world(world_path)).app)


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening (so no one else can
    take it while the test runs)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
    finally:
        s.close()


@dataclass
class Served:
    """The fault sandbox in its own process, driven through its control planes."""

    base_url: str
    process: subprocess.Popen[bytes]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = httpx.request(method, f"{self.base_url}{path}", timeout=10, **kwargs)
        r.raise_for_status()
        return r.json() if r.content else None

    def put_faults(self, faults: dict[str, AgencyFaults], *, seed: int) -> None:
        """``PUT /_sandbox/faults``, as an operator would."""
        profile = FaultProfile(seed=seed, agencies=faults)
        self._call("PUT", "/_sandbox/faults", json=profile.model_dump(mode="json"))

    def put_today(self, today: date) -> None:
        self._call("PUT", "/_sandbox/today", json={"today": today.isoformat()})

    def put_tap(self, *, ctf_rate: float, seed: int) -> None:
        self._call("PUT", "/_tap/config", json={"ctf_rate": ctf_rate, "seed": seed})

    def clear_logs(self) -> None:
        self._call("DELETE", "/_sandbox/requests")
        self._call("DELETE", "/_tap/exchanges")

    def seen(self) -> list[SeenRequest]:
        """The sandbox's own request log (``GET /_sandbox/requests``)."""
        return [SeenRequest(r["agency"], r["method"], r["path"], r["query"], r["fields"],
                            datetime.fromisoformat(r["at"]))
                for r in self._call("GET", "/_sandbox/requests")]

    def exchanges(self) -> list[Exchange]:
        return [Exchange.from_json(d) for d in self._call("GET", "/_tap/exchanges")]


@contextmanager
def serve(world_path: Path, *, log: Path) -> Iterator[Served]:
    """``faultserver.py`` (uvicorn) on a free loopback port, in a process of its own: the
    agencies then never wait for the pipeline's threads (one interpreter lock each)."""
    port = free_port()
    script = Path(__file__).with_name("faultserver.py")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(script), str(world_path), str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/_sandbox/today", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fault sandbox did not start: "
                                       + log.read_text(errors="replace")[-2000:]) from None
                time.sleep(0.1)
        yield Served(base, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- connector env


def connector_env(base_url: str, world: World) -> dict[str, str]:
    """``CME_<NAME>_*`` for the five built-ins at the served sandbox, with small retry and
    timeout knobs so a night of faults takes seconds. Only the LAs and councils the world
    uses are configured (fewer requests; the same code paths)."""
    from sandbox import connector_env as sandbox_env

    env = sandbox_env(base_url, world=world)
    las = sorted({r.la_code for c in world.children for r in c.other_la})
    env["CME_OTHER_LA_LAS"] = json.dumps({code: f"{base_url}/la/{code}" for code in las})
    councils = sorted({r.council for c in world.children for r in c.housing} | set(COUNCILS))
    env["CME_HOUSING_COUNCILS"] = json.dumps(councils)
    for name in AGENCIES:
        p = f"CME_{name.upper()}_"
        env.update({
            p + "TIMEOUT": str(TIMEOUT), p + "CONNECT_TIMEOUT": "1.0",
            p + "MAX_ATTEMPTS": str(MAX_ATTEMPTS), p + "BACKOFF_INITIAL": "0.01",
            p + "BACKOFF_MAX": "0.05", p + "RETRY_AFTER_CAP": "5",
            p + "CIRCUIT_THRESHOLD": str(THRESHOLD), p + "CIRCUIT_COOLDOWN": "3600",
            p + "MAX_CONCURRENCY": str(CONCURRENCY),
        })
    return env


def slow_deferred_answers(world: World) -> World:
    """DWP and Border Force answer 3-6 days after a request is filed (the generator's worlds
    answer the next day): enquiries stay open for polling through most of the run, so the
    deferred agencies' faults meet polls as well as filings, and answers still arrive."""
    world.no_match_after_days = 5
    for i, child in enumerate(world.children):
        for record in (child.dwp, child.border_force):
            if record is not None:
                record.answer_after_days = 3 + i % 4
    return world


def night_env(base: dict[str, str], kinds: dict[str, tuple[str, ...]], *, refused: str
              ) -> dict[str, str]:
    """The base env with tonight's faults that live in the client's settings: a short read
    timeout where requests hang, outages (few in flight and a low breaker threshold: the
    circuit bound is then small and meaningful) and refused connections (the agency's URLs
    point at ``refused``, a port nobody listens on)."""
    env = dict(base)
    for name, kind in kinds.items():
        p = f"CME_{name.upper()}_"
        if "timeout" in kind:
            env[p + "TIMEOUT"] = str(SHORT_TIMEOUT)
        if "outage" in kind:
            env[p + "CIRCUIT_THRESHOLD"] = str(DEAD_THRESHOLD)
            env[p + "MAX_CONCURRENCY"] = str(DEAD_CONCURRENCY)
        elif "refused" in kind:
            if name == "other_la":
                las = json.loads(env["CME_OTHER_LA_LAS"])
                env[p + "LAS"] = json.dumps({c: f"{refused}/la/{c}" for c in las})
            else:
                path = {"housing": "housing", "lpd": "lpd", "dwp": "dwp",
                        "border_force": "border-force"}[name]
                env[p + "BASE_URL"] = f"{refused}/{path}"
    return env


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class CheckRow:
    id: int
    reference: str
    referral_id: int
    connector: str
    round: int
    run_id: str | None
    outcome: str
    fields_disclosed: tuple[str, ...]
    agency_reference: str | None
    error_kind: str | None
    error_code: str | None


@dataclass(frozen=True)
class CaseState:
    reference: str
    referral_id: int
    status: str
    rounds: int
    next_check_due: date | None
    duplicate: bool


@dataclass
class Night:
    """Everything one night left behind, read right after it finished."""

    number: int
    today: date
    kinds: dict[str, tuple[str, ...]]
    before: dict[str, CaseState]
    after: dict[str, CaseState]
    checks: list[CheckRow]
    summary: dict[str, Any]
    seen: list[SeenRequest]
    exchanges: list[Exchange]
    outbox: dict[str, int]
    state: str = "COMPLETED"
    artifact: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def due(self) -> set[str]:
        """The references that were due tonight, by the documented rule (not the code's)."""
        traceable = {"received", "acknowledged", "tracing", "awaiting_response", "escalated",
                     "needs_review", "whereabouts_unknown", "left_uk", "located", "transferred"}
        return {ref for ref, c in self.before.items()
                if c.status in traceable and not c.duplicate and c.next_check_due is not None
                and c.next_check_due <= self.today}

    def checks_of(self, connector: str) -> list[CheckRow]:
        return [c for c in self.checks if c.connector == connector]


@dataclass
class FaultRun:
    """The run the fault tests inspect (made once per session by ``fault_run``)."""

    world: World
    referrals: list[dict[str, Any]]
    intake: dict[str, int]
    nights: list[Night]
    people: dict[str, dict[str, Any]]
    audit_json: dict[str, Any]
    audit_by_ref: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_cases(db_url: str) -> dict[str, CaseState]:
    from sqlmodel import Session, select

    from models import Referral, get_engine

    with Session(get_engine(db_url)) as s:
        return {r.mendix_reference: CaseState(r.mendix_reference, r.id or 0, r.status.value,
                                              r.tracing_rounds, r.next_check_due,
                                              r.duplicate_of_id is not None)
                for r in s.exec(select(Referral))}


def read_checks(db_url: str, *, after_id: int = 0) -> list[CheckRow]:
    from sqlmodel import Session, col, select

    from models import Check, Referral, get_engine

    with Session(get_engine(db_url)) as s:
        rows = s.exec(select(Check, Referral.mendix_reference)
                      .join(Referral, col(Referral.id) == col(Check.referral_id))
                      .where(col(Check.id) > after_id).order_by(col(Check.id))).all()
        return [CheckRow(c.id or 0, ref, c.referral_id, c.connector, c.round, c.run_id,
                         c.outcome.value, tuple(c.fields_disclosed or ()), c.agency_reference,
                         c.error_kind, c.error_code) for c, ref in rows]


def read_outbox(db_url: str) -> dict[str, int]:
    from sqlalchemy import func
    from sqlmodel import Session, col, select

    from models import Notification, get_engine

    with Session(get_engine(db_url)) as s:
        return {str(getattr(k, "value", k)): int(n) for k, n in s.exec(
            select(Notification.status, func.count()).group_by(col(Notification.status)))}


def subjects(db_url: str) -> dict[str, dict[str, Any]]:
    """Per reference, the values each query field would carry (as the wire would show them),
    read straight from the database: used to tell whose enquiry a request was."""
    from sqlmodel import Session, col, select

    from models import Child, Referral, get_engine

    out: dict[str, dict[str, Any]] = {}
    with Session(get_engine(db_url)) as s:
        for r, c in s.exec(select(Referral, Child).join(Child, col(Child.id) == Referral.child_id)):
            parent = None
            for p in c.parents or []:
                words = (p.get("name") or "").split()
                if words:
                    parent = words[-1]
                    break
            out[r.mendix_reference] = {
                "upn": c.upn, "forename": c.forename, "surname": c.surname,
                "dob": c.dob.isoformat() if c.dob else None, "sex": c.sex,
                "postcode": c.postcode, "address_line": c.address_line1,
                "parent_surname": parent, "town": c.town, "nhs_number": c.nhs_number,
            }
    return out


def whose(fields: dict[str, Any], people: dict[str, dict[str, Any]]) -> set[str]:
    """The references whose values match every field a request carried."""
    if not fields:
        return set()
    return {ref for ref, values in people.items()
            if all(values.get(k) is not None and str(values.get(k)) == str(v)
                   for k, v in fields.items())}
