"""One ASGI app simulating every agency and the Mendix referral source.

Path prefixes: ``/la/{la_code}`` (other LAs), ``/housing/{council}``, ``/lpd``, ``/dwp``,
``/border-force``, ``/mendix/odata``; ``/_sandbox`` is the control plane (request log, world
clock, faults) and is never faulted or logged. OpenAPI: ``/openapi.json`` and
``sandbox/openapi/*.json``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

import httpx
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._world import AGENCIES, FaultProfile, World, WorldChild
from .asgi import read_body, replay_body

__all__ = ["SeenRequest", "Sandbox", "asgi_transport"]

_PREFIXES = (("/la/", "other_la"), ("/housing/", "housing"), ("/lpd/", "lpd"),
             ("/dwp/", "dwp"), ("/border-force/", "border_force"), ("/mendix/", "mendix"))
_HEALTH = {"status": "ok"}


def agency_of(path: str) -> str | None:
    for prefix, agency in _PREFIXES:
        if path.startswith(prefix):
            return agency
    return None


def _norm(value: Any) -> str:
    return re.sub(r"\s+", "", str(value or "")).upper()


@dataclass(frozen=True)
class SeenRequest:
    """One request the sandbox received (for disclosure audits)."""

    agency: str
    method: str
    path: str
    query: dict[str, str]
    fields: dict[str, Any]
    at: datetime

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(self.fields)


@dataclass
class Sandbox:
    """The simulated outside world: ``Sandbox(world, faults, today=...)``; ``.app`` is ASGI.

    ``seen`` logs every agency request (path, query, JSON body fields and values) unless
    ``log_requests`` is false (a long load test); ``counts`` always counts them per agency;
    ``today`` is the world clock deferred answers are measured against (``advance(days)``).
    """

    world: World
    faults: FaultProfile = field(default_factory=FaultProfile)
    today: date | None = None
    seen: list[SeenRequest] = field(default_factory=list)
    log_requests: bool = True
    counts: Counter[str] = field(default_factory=Counter)
    app: FastAPI = field(init=False)

    def __post_init__(self) -> None:
        if self.today is None:
            self.today = self.world.today
        self._rng = random.Random(self.faults.seed)
        self._inflight: dict[str, int] = dict.fromkeys(AGENCIES, 0)
        self._by_id = {c.id: c for c in self.world.children}
        self._by_upn = {c.upn.upper(): c for c in self.world.children if c.upn}
        self._by_name: dict[tuple[str, str, str], list[WorldChild]] = {}
        # housing matches on a family name: index children by surname and parent's surname
        # (in world order), so a search costs its candidates, not the whole world
        self._by_family: dict[str, list[tuple[int, WorldChild]]] = {}
        for n, c in enumerate(self.world.children):
            for surname in [c.surname, *c.former_surnames]:
                key = (_norm(c.forename), _norm(surname), c.dob.isoformat())
                self._by_name.setdefault(key, []).append(c)
            for family in {_norm(c.surname), _norm(c.parent_surname)} - {""}:
                self._by_family.setdefault(family, []).append((n, c))
        self._referrals: dict[str, dict[str, Any]] = {}
        for rec in self.world.referrals:
            self.upsert_referral(rec)
        self.app = build_app(self)

    # world clock & control ------------------------------------------------------------

    @property
    def clock(self) -> date:
        assert self.today is not None
        return self.today

    def advance(self, days: int = 1) -> date:
        self.today = self.clock + timedelta(days=days)
        return self.today

    def set_faults(self, faults: FaultProfile) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)

    def requests_to(self, agency: str) -> list[SeenRequest]:
        return [r for r in self.seen if r.agency == agency]

    def upsert_referral(self, record: dict[str, Any]) -> None:
        """Add a referral to the Mendix source, or replace the one with its reference."""
        ref = str(record.get("mendix_reference"))
        current = self._referrals.get(ref)
        if current is None or str(record.get("changed_at", "")) >= str(
            current.get("changed_at", "")
        ):
            self._referrals[ref] = record

    # matching -------------------------------------------------------------------------

    def match_person(self, body: dict[str, Any]) -> WorldChild | None:
        """By UPN when given, else forename + surname (or a former surname) + DOB."""
        upn = body.get("upn")
        if upn:
            return self._by_upn.get(_norm(upn))
        key = (_norm(body.get("forename")), _norm(body.get("surname")), str(body.get("dob")))
        found = self._by_name.get(key, [])
        sex = body.get("sex")
        if sex:
            found = [c for c in found if c.sex == sex] or found
        return found[0] if len(found) == 1 else None

    def match_household(self, body: dict[str, Any]) -> list[WorldChild]:
        """Housing: surname or parent's surname, plus postcode or first address line."""
        names = {_norm(body.get("surname")), _norm(body.get("parent_surname"))} - {""}
        pc, line = _norm(body.get("postcode")), _norm(body.get("address_line"))
        candidates = dict(pair for name in names for pair in self._by_family.get(name, ()))
        out = []
        for _, c in sorted(candidates.items(), key=lambda kv: kv[0]):
            if (pc and pc == _norm(c.postcode)) or (line and line == _norm(c.address_line)):
                out.append(c)
        return out

    # deferred enquiries (stateless references: survive a restart) ----------------------

    def file_request(self, prefix: str, child: WorldChild | None) -> tuple[str, date]:
        token = child.id if child else f"N{secrets.randbelow(10**8):08d}"
        ref = f"{prefix}-{self.clock:%Y%m%d}-{token}"
        return ref, self.clock + timedelta(days=self.world.deferred_sla_days)

    def read_request(self, prefix: str, reference: str) -> tuple[date, WorldChild | None]:
        m = re.fullmatch(rf"{re.escape(prefix)}-(\d{{8}})-([A-Z]\d+)", reference)
        if not m:
            raise HTTPException(404, "unknown reference")
        filed = datetime.strptime(m.group(1), "%Y%m%d").date()  # noqa: DTZ007
        token = m.group(2)
        child = None if token.startswith("N") else self._by_id.get(token)
        if child is None and not token.startswith("N"):
            raise HTTPException(404, "unknown reference")
        return filed, child


# the ASGI app ----------------------------------------------------------------------------


class Enquiry(BaseModel):
    forename: str | None = None
    surname: str | None = None
    dob: date | None = None
    upn: str | None = None
    sex: str | None = None
    postcode: str | None = None
    address_line: str | None = None
    parent_surname: str | None = None


class Filed(BaseModel):
    reference: str
    expected_by: date


def _ctf_xml(child: WorldChild) -> str:
    parts = [f'<?xml version="1.0" encoding="UTF-8"?><LostPupilSearch matches="{len(child.lpd)}">']
    for r in child.lpd:
        parts.append(
            "<CTfile><Header><DocumentName>Common Transfer File</DocumentName>"
            "<CTFversion>25.0</CTFversion><DocumentQualifier>partial</DocumentQualifier>"
            f"<SourceSchool><LEA>{r.source_la}</LEA><Estab>{r.source_estab}</Estab>"
            f"</SourceSchool><DestSchool><LEA>{r.dest_la}</LEA><Estab>{r.dest_estab}</Estab>"
            "</DestSchool></Header><CTFpupilData><Pupil>"
            f"<UPN>{escape(child.upn or '')}</UPN><Surname>{escape(child.surname)}</Surname>"
            f"<Forename>{escape(child.forename)}</Forename><DOB>{child.dob}</DOB>"
            f"<Sex>{child.sex}</Sex><LeavingDate>{r.leaving_date}</LeavingDate>"
            "</Pupil></CTFpupilData></CTfile>"
        )
    parts.append("</LostPupilSearch>")
    return "".join(parts)


_FILTER = re.compile(r"ChangedDate (gt|ge|lt|le|eq) (\S+)")


def _odata_filter(expr: str) -> list[tuple[str, datetime]]:
    clauses = []
    for part in re.split(r"\s+and\s+", expr.strip()):
        m = _FILTER.fullmatch(part.strip())
        if not m:
            raise HTTPException(400, "only 'ChangedDate <op> <datetime>' [and ...] is supported")
        try:
            when = datetime.fromisoformat(m.group(2).replace("Z", "+00:00"))
        except ValueError as exc:
            raise HTTPException(400, "bad datetime literal") from exc
        clauses.append((m.group(1), when if when.tzinfo else when.replace(tzinfo=UTC)))
    return clauses


def _changed(rec: dict[str, Any]) -> datetime:
    when = datetime.fromisoformat(str(rec.get("changed_at")).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


_OPS = {"gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b, "eq": lambda a, b: a == b}


def build_app(sb: Sandbox) -> FastAPI:  # noqa: C901 - one route table
    app = FastAPI(
        title="CME sandbox: simulated agencies",
        version="1.0.0",
        description="Synthetic stand-ins for the agencies the CME connectors call, and the "
        "Mendix referral source. Never real data.",
    )

    # ---- other LAs
    @app.post("/la/{la_code}/cme/v1/enquiries", tags=["other_la"])
    async def la_enquiry(la_code: str, enquiry: Enquiry) -> dict[str, Any]:
        asked = enquiry.model_dump(mode="json", exclude_none=True)
        child = sb.match_person(asked)
        records = [r for r in (child.other_la if child else []) if r.la_code == la_code]
        if not records:
            return {"result": "no_match"}
        # How the LA matched the child: on the UPN when one was sent, else names + DOB.
        matched_on = "upn" if asked.get("upn") else "name_dob"
        out = []
        for r in records:
            rec: dict[str, Any] = {"type": r.kind, "since": r.since.isoformat(),
                                   "safeguarding": r.safeguarding, "matched_on": matched_on}
            if r.kind == "on_roll":
                rec["school_urn"] = r.school_urn
            else:
                rec.update(address_line=r.address_line, postcode=r.postcode)
            out.append(rec)
        return {"result": "match", "records": out}

    @app.get("/la/{la_code}/cme/v1/health", tags=["other_la"])
    async def la_health(la_code: str) -> dict[str, str]:
        return _HEALTH

    # ---- housing
    @app.post("/housing/{council}/v1/searches", tags=["housing"])
    async def housing_search(council: str, enquiry: Enquiry) -> dict[str, Any]:
        matches = []
        for child in sb.match_household(enquiry.model_dump(mode="json", exclude_none=True)):
            for r in child.housing:
                if r.council == council:
                    matches.append({"address_type": r.address_type,
                                    "address_line": r.address_line, "town": r.town,
                                    "postcode": r.postcode, "la_code": r.la_code,
                                    "recorded_on": r.recorded_on.isoformat(),
                                    "safeguarding": r.safeguarding})
        return {"matches": matches}

    @app.get("/housing/{council}/v1/health", tags=["housing"])
    async def housing_health(council: str) -> dict[str, str]:
        return _HEALTH

    # ---- LPD
    @app.post("/lpd/s2s/v1/lost-pupils/search", tags=["lpd"],
              responses={200: {"content": {"application/xml": {}}}})
    async def lpd_search(enquiry: Enquiry) -> Response:
        child = sb.match_person(enquiry.model_dump(mode="json", exclude_none=True))
        if child is None or not child.lpd:
            body = '<?xml version="1.0" encoding="UTF-8"?><LostPupilSearch matches="0"/>'
        else:
            body = _ctf_xml(child)
        return Response(body, media_type="application/xml")

    @app.get("/lpd/s2s/v1/health", tags=["lpd"])
    async def lpd_health() -> dict[str, str]:
        return _HEALTH

    # ---- deferred agencies
    def deferred_routes(prefix: str, path: str, tag: str) -> None:
        @app.post(f"{path}/v1/requests", status_code=202, tags=[tag], response_model=Filed)
        async def file(enquiry: Enquiry) -> Filed:
            child = sb.match_person(enquiry.model_dump(mode="json", exclude_none=True))
            ref, expected = sb.file_request(prefix, child)
            return Filed(reference=ref, expected_by=expected)

        @app.get(f"{path}/v1/requests/{{reference}}", tags=[tag])
        async def poll(reference: str) -> dict[str, Any]:
            filed, child = sb.read_request(prefix, reference)
            record = getattr(child, tag) if child else None
            after = record.answer_after_days if record else sb.world.no_match_after_days
            answer_on = filed + timedelta(days=after)
            if sb.clock < answer_on:
                return {"reference": reference, "status": "pending",
                        "expected_by": (filed + timedelta(days=sb.world.deferred_sla_days))
                        .isoformat()}
            if record is None:
                return {"reference": reference, "status": "answered", "result": "no_match"}
            out: dict[str, Any] = {"reference": reference, "status": "answered",
                                   "result": "match", "answered_on": answer_on.isoformat()}
            if tag == "dwp":
                out["address"] = {"line1": record.address_line, "town": record.town,
                                  "postcode": record.postcode, "la_code": record.la_code}
                out["recorded_on"] = record.recorded_on.isoformat()
            else:
                out["movements"] = [m.model_dump(mode="json") for m in record.movements]
            return out

        @app.get(f"{path}/v1/health", tags=[tag])
        async def health() -> dict[str, str]:
            return _HEALTH

    deferred_routes("DWP", "/dwp", "dwp")
    deferred_routes("BF", "/border-force", "border_force")

    # ---- Mendix OData v4
    @app.get("/mendix/odata/Referrals", tags=["mendix"])
    async def referrals(request: Request) -> JSONResponse:
        _basic_auth(request, sb)
        q = dict(request.query_params)
        items = sorted(sb._referrals.values(), key=lambda r: (_changed(r),
                                                              str(r.get("mendix_reference"))))
        if "$filter" in q:
            clauses = _odata_filter(q["$filter"])
            items = [r for r in items if all(_OPS[op](_changed(r), v) for op, v in clauses)]
        order = q.get("$orderby", "ChangedDate asc").strip()
        if order not in ("ChangedDate", "ChangedDate asc", "ChangedDate desc"):
            raise HTTPException(400, "only $orderby=ChangedDate [asc|desc] is supported")
        if order.endswith("desc"):
            items.reverse()
        try:
            skip = int(q.get("$skip", "0"))
            top = min(int(q.get("$top", str(sb.world.mendix.max_page_size))),
                      sb.world.mendix.max_page_size)
        except ValueError as exc:
            raise HTTPException(400, "$top/$skip must be integers") from exc
        page = items[skip: skip + top]
        base = str(request.url).split("?")[0]
        body: dict[str, Any] = {"@odata.context": f"{base.rsplit('/', 1)[0]}/$metadata#Referrals"}
        if q.get("$count") == "true":
            body["@odata.count"] = len(items)
        body["value"] = [{"ID": r.get("mendix_reference"),
                          "ChangedDate": _changed(r).isoformat().replace("+00:00", "Z"), **r}
                         for r in page]
        if skip + top < len(items):
            nxt = {**q, "$skip": str(skip + top), "$top": str(top)}
            body["@odata.nextLink"] = f"{base}?{urlencode(nxt)}"
        return JSONResponse(body)

    @app.get("/mendix/odata/$metadata", tags=["mendix"])
    async def metadata(request: Request) -> Response:
        _basic_auth(request, sb)
        return Response(_CSDL, media_type="application/xml")

    # ---- control plane
    @app.get("/_sandbox/requests", tags=["control"])
    async def seen() -> list[dict[str, Any]]:
        return [{"agency": r.agency, "method": r.method, "path": r.path, "query": r.query,
                 "fields": r.fields, "at": r.at.isoformat()} for r in sb.seen]

    @app.delete("/_sandbox/requests", tags=["control"], status_code=204)
    async def clear() -> None:
        sb.seen.clear()
        sb.counts.clear()

    @app.get("/_sandbox/counts", tags=["control"])
    async def counts() -> dict[str, int]:
        return dict(sb.counts)

    @app.get("/_sandbox/today", tags=["control"])
    async def get_today() -> dict[str, str]:
        return {"today": sb.clock.isoformat()}

    @app.put("/_sandbox/today", tags=["control"])
    async def put_today(today: date = Body(embed=True)) -> dict[str, str]:
        sb.today = today
        return {"today": sb.clock.isoformat()}

    @app.post("/_sandbox/advance", tags=["control"])
    async def advance(days: int = 1) -> dict[str, str]:
        return {"today": sb.advance(days).isoformat()}

    @app.put("/_sandbox/faults", tags=["control"])
    async def put_faults(profile: FaultProfile) -> dict[str, str]:
        sb.set_faults(profile)
        return {"status": "ok"}

    @app.post("/_sandbox/referrals", tags=["control"])
    async def add_referral(record: dict[str, Any] = Body()) -> dict[str, str]:
        sb.upsert_referral(record)
        return {"status": "ok"}

    app.add_middleware(FaultsAndLog, sandbox=sb)
    return app


def _basic_auth(request: Request, sb: Sandbox) -> None:
    header = request.headers.get("authorization", "")
    expected = base64.b64encode(
        f"{sb.world.mendix.username}:{sb.world.mendix.password}".encode()
    ).decode()
    if not secrets.compare_digest(header, f"Basic {expected}"):
        raise HTTPException(401, "authentication required",
                            headers={"WWW-Authenticate": 'Basic realm="Mendix"'})


_CSDL = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
 <edmx:DataServices><Schema Namespace="CME" xmlns="http://docs.oasis-open.org/odata/ns/edm">
  <EntityType Name="Referral"><Key><PropertyRef Name="ID"/></Key>
   <Property Name="ID" Type="Edm.String" Nullable="false"/>
   <Property Name="ChangedDate" Type="Edm.DateTimeOffset" Nullable="false"/>
   <Property Name="mendix_reference" Type="Edm.String"/>
  </EntityType>
  <EntityContainer Name="Container"><EntitySet Name="Referrals" EntityType="CME.Referral"/>
  </EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"""


class FaultsAndLog:
    """Pure ASGI middleware: log each agency request, then apply the agency's faults."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sb = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        agency = agency_of(scope["path"])
        if agency is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        self._record(agency, scope, body)
        replay = replay_body(body)

        sb = self.sb
        f = sb.faults.for_agency(agency)
        if f.outage:
            await _plain(send, 503, b'{"error": "service unavailable"}')
            return
        if f.max_concurrency is not None and sb._inflight[agency] >= f.max_concurrency:
            await _plain(send, 429, b'{"error": "too many requests"}', self._retry_after(f))
            return
        sb._inflight[agency] += 1
        try:
            delay = f.latency_ms + (sb._rng.uniform(0, f.jitter_ms) if f.jitter_ms else 0.0)
            if delay:
                await asyncio.sleep(delay / 1000)
            roll = sb._rng.random
            if f.timeout_rate and roll() < f.timeout_rate:
                await asyncio.sleep(f.timeout_seconds)
                await _plain(send, 504, b'{"error": "gateway timeout"}')
                return
            if f.rate_limit_rate and roll() < f.rate_limit_rate:
                await _plain(send, 429, b'{"error": "slow down"}', self._retry_after(f))
                return
            for status, rate in f.error_rates.items():
                if rate and roll() < rate:
                    await _plain(send, int(status), b'{"error": "simulated failure"}')
                    return
            if f.malformed_rate and roll() < f.malformed_rate:
                await _plain(send, 200, b'{"result": "match", "records": [{"type": ')
                return
            if f.truncated_rate and roll() < f.truncated_rate:
                await self.app(scope, replay, _truncating(send))
                return
            await self.app(scope, replay, send)
        finally:
            sb._inflight[agency] -= 1

    def _retry_after(self, f: Any) -> list[tuple[bytes, bytes]]:
        if f.retry_after_http_date:
            when = datetime.now(UTC) + timedelta(seconds=f.retry_after)
            value = email.utils.format_datetime(when, usegmt=True)
        else:
            value = str(f.retry_after)
        return [(b"retry-after", value.encode())]

    def _record(self, agency: str, scope: Scope, body: bytes) -> None:
        self.sb.counts[agency] += 1
        if not self.sb.log_requests:
            return
        fields: dict[str, Any] = {}
        if body:
            try:
                parsed = json.loads(body)
                if isinstance(parsed, dict):
                    fields = parsed
            except ValueError:
                fields = {}
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        self.sb.seen.append(SeenRequest(agency, scope["method"], scope["path"], query, fields,
                                        datetime.now(UTC)))


async def _plain(send: Send, status: int, body: bytes,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _truncating(send: Send) -> Send:
    """Send the declared Content-Length but only half the body (a cut connection)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.body":
            full = message.get("body", b"")
            await send({"type": "http.response.body", "body": full[: len(full) // 2],
                        "more_body": False})
            return
        await send(message)

    return wrapped


def asgi_transport(sandbox: Sandbox) -> httpx.ASGITransport:
    """An httpx transport that serves requests from ``sandbox`` in process."""
    return httpx.ASGITransport(app=sandbox.app)


