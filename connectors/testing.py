"""Conformance kit: the standard tests every agency connector must pass.

Subclass :class:`ConnectorConformance` in a test module (name it ``Test...``), tell it how
to make the connector and how the agency answers, and pytest runs the standard tests::

    class TestMyAgency(ConnectorConformance):
        connector_factory = staticmethod(lambda: MyConnector(MySettings(base_url=BASE)))

        def found_route(self, router: respx.MockRouter) -> None:
            router.post(f"{BASE}/search").respond(200, json={"match": True, ...})

        def not_found_route(self, router: respx.MockRouter) -> None:
            router.post(f"{BASE}/search").respond(200, json={"match": False})

Deferred connectors' routes serve both the submit (answering with a reference) and the poll
(answering ``match`` for found, ``no_match`` for not found). The connector's base URL
should be ``https://...``. Set ``calls_per_check`` if one check makes several requests
(e.g. one per office). The kit injects its own transport (faults first, then the respx
routes), a recording ``sleep`` (nothing really sleeps), a fixed clock, a small retry policy
and a test circuit breaker. Tests are synchronous (``asyncio.run``), so the kit needs no
pytest-asyncio configuration. ``STANDARD_TESTS`` names them.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx

from policy import EVIDENCE_KINDS, evidence_problems

from ._contract import Connector
from ._models import QUERY_FIELDS, CheckOutcome, Outcome, Result, TraceSubject
from ._registry import available
from ._resilience import CircuitBreaker, RateLimiter
from ._runner import run_connector, run_deferred_poll, run_deferred_submit

__all__ = [
    "DEFAULT_SUBJECT",
    "KIT_SETTINGS",
    "STANDARD_TESTS",
    "ConnectorConformance",
    "FaultTransport",
    "register_entry_points",
    "sentinel_subject",
]

#: Settings the kit applies on top of the connector's own, so counts are predictable.
KIT_SETTINGS: dict[str, Any] = {
    "max_attempts": 3,
    "backoff_initial": 0.1,
    "backoff_max": 1.0,
    "retry_after_cap": 30.0,
    "circuit_cooldown": 60.0,
    "max_response_bytes": 4096,
    "timeout": 2.0,
    "connect_timeout": 1.0,
}

FIXED_NOW = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)

#: A synthetic child with every field set (Faker-free so it is stable).
DEFAULT_SUBJECT = TraceSubject(
    reference="CME-2026-999001",
    upn="H801200001001",
    forename="Quillonia",
    surname="Brackenthwaite",
    former_surnames=("Ostrevanney",),
    dob=date(2014, 5, 17),
    sex="F",
    postcode="SO23 8ZZ",
    address_line="17 Tamarisk Lane",
    town="Winchester",
    last_school_urn="116123",
    home_la="850",
    parent_surname="Brackenthwaite-Lowe",
    nhs_number="9434765919",
)

_SENTINEL_DATE = date(1911, 11, 11)


def _sentinel(name: str) -> str:
    return f"Zq{name.replace('_', '')}Sentinel"


def sentinel_subject(subject: TraceSubject, declared: frozenset[str]) -> TraceSubject:
    """``subject`` with every field the connector does not declare set to a sentinel."""
    update: dict[str, Any] = {}
    for name in QUERY_FIELDS - declared:
        if name == "dob":
            update[name] = _SENTINEL_DATE
        elif name == "former_surnames":
            update[name] = (_sentinel(name),)
        else:
            update[name] = _sentinel(name)
    return subject.model_copy(update=update)


def _values(subject: TraceSubject, names: frozenset[str] | set[str]) -> dict[str, list[str]]:
    """Searchable renderings of each named field's value."""
    out: dict[str, list[str]] = {}
    for name in names:
        value = getattr(subject, name)
        if value in (None, "", ()):
            continue
        if isinstance(value, date):
            out[name] = [value.isoformat(), value.strftime("%d/%m/%Y"), value.strftime("%Y%m%d")]
        elif isinstance(value, tuple):
            out[name] = [str(v) for v in value]
        else:
            out[name] = [str(value)]
    return out


@dataclass
class FaultTransport(httpx.AsyncBaseTransport):
    """Serves ``script`` items first (responses or exceptions), or ``always`` for every
    request if set, then the respx router. Records every request it sees."""

    router: respx.MockRouter
    script: list[httpx.Response | Exception] = field(default_factory=list)
    always: Callable[[httpx.Request], httpx.Response] | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, Exception):
                if isinstance(item, httpx.RequestError):
                    item.request = request
                raise item
            return item
        if self.always is not None:
            return self.always(request)
        return await self.router.async_handler(request)

    def wire_text(self) -> str:
        """Every request as text: method, URL, headers and body."""
        parts = []
        for r in self.requests:
            headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
            parts.append(f"{r.method} {r.url}\n{headers}\n\n{r.content.decode('utf-8', 'replace')}")
        return "\n----\n".join(parts)


@dataclass
class _Run:
    outcomes: list[CheckOutcome]
    sleeps: list[float]
    transport: FaultTransport

    @property
    def last(self) -> CheckOutcome:
        return self.outcomes[-1]

    @property
    def result(self) -> Result:
        return self.outcomes[-1].result


class ConnectorConformance:
    """Base class of a connector's conformance tests (see the module docstring)."""

    #: A callable returning a configured connector (a class, a function, a staticmethod).
    connector_factory: ClassVar[Callable[[], Connector]]
    #: The child the checks are about; undeclared fields are replaced by sentinels.
    subject: ClassVar[TraceSubject] = DEFAULT_SUBJECT
    #: HTTP requests one check makes when every answer is the same (offices asked).
    calls_per_check: ClassVar[int] = 1
    #: Check that the connector is discoverable through the ``cme.connectors`` entry point.
    expect_entry_point: ClassVar[bool] = True

    # hooks -------------------------------------------------------------------------------

    def found_route(self, router: respx.MockRouter) -> None:
        raise NotImplementedError("install respx routes answering 'found'")

    def not_found_route(self, router: respx.MockRouter) -> None:
        raise NotImplementedError("install respx routes answering 'not found'")

    def check_found(self, result: Result) -> None:
        """Extra assertions on the parsed 'found' result (override to pin evidence)."""

    # machinery ---------------------------------------------------------------------------

    def make_connector(self) -> Connector:
        connector: Any = None
        for klass in type(self).__mro__:
            if "connector_factory" in klass.__dict__:
                connector = klass.__dict__["connector_factory"]
                break
        if isinstance(connector, staticmethod):
            connector = connector.__func__
        if connector is None:
            raise NotImplementedError("set connector_factory")
        made = connector()
        made.settings = made.settings.model_copy(update=KIT_SETTINGS)
        self.clock_value = 0.0
        # one all-failing check (every office, every attempt) is what opens the circuit
        threshold = KIT_SETTINGS["max_attempts"] * self.calls_per_check
        made.breaker = CircuitBreaker(
            threshold, KIT_SETTINGS["circuit_cooldown"],
            clock=lambda: self.clock_value,
        )
        made.limiter = RateLimiter(None)
        assert isinstance(made, Connector)
        return made

    def full_subject(self, connector: Connector) -> TraceSubject:
        return sentinel_subject(self.subject, frozenset(connector.fields))

    def _router(self, route: str | None) -> respx.MockRouter:
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        if route == "found":
            self.found_route(router)
        elif route == "not_found":
            self.not_found_route(router)
        return router

    def run(
        self,
        connector: Connector,
        *,
        route: str | None = "found",
        script: list[httpx.Response | Exception] | None = None,
        always: Callable[[httpx.Request], httpx.Response] | None = None,
        poll: bool = True,
        subject: TraceSubject | None = None,
    ) -> _Run:
        """One check (for deferred connectors: submit, then poll if pending and ``poll``)."""
        transport = FaultTransport(self._router(route), list(script or []), always)
        sleeps: list[float] = []
        subj = subject or self.full_subject(connector)

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        async def go() -> list[CheckOutcome]:
            kw: dict[str, Any] = {"transport": transport, "sleep": sleep, "now": lambda: FIXED_NOW}
            if not connector.deferred:
                return await run_connector(connector, [subj], **kw)
            outs = await run_deferred_submit(connector, [subj], **kw)
            res = outs[0].result
            if poll and res.outcome is Outcome.PENDING and res.agency_reference:
                outs += await run_deferred_poll(
                    connector, [(subj.reference, res.agency_reference)], **kw
                )
            return outs

        return _Run(asyncio.run(go()), sleeps, transport)

    def _pii(self, subject: TraceSubject) -> list[str]:
        personal = {"upn", "forename", "surname", "former_surnames", "dob", "postcode",
                    "address_line", "parent_surname", "nhs_number"}
        return [v for vs in _values(subject, personal).values() for v in vs if len(v) >= 4]

    # the standard tests ------------------------------------------------------------------

    def test_registration_metadata_is_valid(self) -> None:
        connector = self.make_connector()
        cls = type(connector)
        assert cls.contract_problems() == []
        assert connector.version and connector.agency
        assert connector.fields <= QUERY_FIELDS
        assert connector.allowed_hosts(), "configure a base URL: the allow-list is empty"
        if self.expect_entry_point:
            info = available().connectors.get(cls.name)
            assert info is not None, f"{cls.name} is not registered in group cme.connectors"
            assert info.cls is cls

    def test_found_is_parsed(self) -> None:
        connector = self.make_connector()
        run = self.run(connector, route="found")
        if connector.deferred:
            first = run.outcomes[0].result
            assert first.outcome is Outcome.PENDING, first
            assert first.agency_reference and first.expected_by
        assert run.result.outcome is Outcome.FOUND, run.result
        assert run.result.evidence
        self.check_found(run.result)

    def test_evidence_is_what_the_rulebook_reads(self) -> None:
        """Every piece of 'found' evidence has a kind the rulebook reads and says how the
        agency matched the child (docs/connectors.md, "How the rulebook uses evidence")."""
        connector = self.make_connector()
        run = self.run(connector, route="found")
        assert run.result.outcome is Outcome.FOUND, run.result
        for e in run.result.evidence:
            assert e.kind in EVIDENCE_KINDS, f"evidence kind {e.kind!r} is not read by policy"
        problems = evidence_problems(run.result.evidence)
        assert problems == [], "; ".join(problems)

    def test_not_found_is_parsed(self) -> None:
        connector = self.make_connector()
        run = self.run(connector, route="not_found")
        assert run.result.outcome is Outcome.NOT_FOUND, run.result

    def test_only_declared_fields_leave_the_process(self) -> None:
        connector = self.make_connector()
        subject = self.full_subject(connector)
        run = self.run(connector, route="found", subject=subject)
        wire = run.transport.wire_text().lower()
        assert run.transport.requests
        undeclared = QUERY_FIELDS - connector.fields
        for name, renderings in _values(subject, undeclared).items():
            for text in renderings:
                assert text.lower() not in wire, f"undeclared field {name} left the process"

    def test_disclosed_fields_are_exactly_what_was_sent(self) -> None:
        connector = self.make_connector()
        subject = self.full_subject(connector)
        run = self.run(connector, route="found", subject=subject)
        first = run.outcomes[0]
        disclosed = set(first.disclosed_fields)
        assert list(first.disclosed_fields) == sorted(disclosed)
        assert disclosed and disclosed <= connector.fields
        wire = run.transport.wire_text().lower()
        for name, renderings in _values(subject, QUERY_FIELDS - disclosed).items():
            for text in renderings:
                assert text.lower() not in wire, f"{name} was sent but not reported as disclosed"
        for later in run.outcomes[1:]:  # polls send only the agency reference
            assert later.disclosed_fields == ()

    def test_no_personal_data_in_urls(self) -> None:
        connector = self.make_connector()
        subject = self.full_subject(connector)
        run = self.run(connector, route="found", subject=subject)
        for request in run.transport.requests:
            url = str(request.url).lower()
            for text in self._pii(subject):
                assert text.lower() not in url, "personal data in a URL (put it in the body)"

    def test_429_with_retry_after_seconds_is_honoured(self) -> None:
        connector = self.make_connector()
        script: list[httpx.Response | Exception] = [
            httpx.Response(429, headers={"Retry-After": "7"})
        ]
        run = self.run(connector, route="found", script=script)
        assert 7.0 in run.sleeps
        assert run.result.outcome is Outcome.FOUND, run.result

    def test_429_with_http_date_retry_after_is_honoured(self) -> None:
        connector = self.make_connector()
        when = email.utils.format_datetime(FIXED_NOW + timedelta(seconds=12), usegmt=True)
        script: list[httpx.Response | Exception] = [
            httpx.Response(429, headers={"Retry-After": when})
        ]
        run = self.run(connector, route="found", script=script)
        assert 12.0 in run.sleeps
        assert run.result.outcome is Outcome.FOUND, run.result

    def test_429_with_retry_after_over_the_cap_gives_up_without_sleeping(self) -> None:
        connector = self.make_connector()
        run = self.run(connector, route="found",
                       always=lambda r: httpx.Response(429, headers={"Retry-After": "3600"}))
        result = run.outcomes[0].result
        assert result.outcome is Outcome.ERROR
        assert (result.error_kind, result.error_code) == ("transient", "rate_limited")
        assert run.sleeps == []
        assert len(run.transport.requests) == self.calls_per_check

    def test_5xx_exhausts_retries_with_the_expected_call_count(self) -> None:
        connector = self.make_connector()
        run = self.run(connector, always=lambda r: httpx.Response(503))
        result = run.outcomes[0].result
        assert result.outcome is Outcome.ERROR
        assert (result.error_kind, result.error_code) == ("transient", "http_503")
        attempts = KIT_SETTINGS["max_attempts"]
        assert len(run.transport.requests) == attempts * self.calls_per_check
        assert run.outcomes[0].http_calls == attempts * self.calls_per_check
        assert len([s for s in run.sleeps if s > 0]) == (attempts - 1) * self.calls_per_check

    def test_408_and_500_are_retried(self) -> None:
        connector = self.make_connector()
        script: list[httpx.Response | Exception] = [httpx.Response(408), httpx.Response(500)]
        run = self.run(connector, route="found", script=script)
        assert run.result.outcome is Outcome.FOUND, run.result

    def test_timeouts_are_retried(self) -> None:
        connector = self.make_connector()
        script: list[httpx.Response | Exception] = [httpx.ReadTimeout("kit"),
                                                    httpx.ConnectTimeout("kit")]
        run = self.run(connector, route="found", script=script)
        assert run.result.outcome is Outcome.FOUND, run.result

    def test_connection_errors_and_keepalive_races_are_retried(self) -> None:
        connector = self.make_connector()
        script: list[httpx.Response | Exception] = [httpx.ConnectError("kit"),
                                                    httpx.RemoteProtocolError("kit")]
        run = self.run(connector, route="found", script=script)
        assert run.result.outcome is Outcome.FOUND, run.result

    def test_timeouts_exhausted_end_as_transient_timeout(self) -> None:
        connector = self.make_connector()

        def timeout(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("kit", request=request)

        run = self.run(connector, always=timeout)
        result = run.outcomes[0].result
        assert (result.error_kind, result.error_code) == ("transient", "timeout")
        assert len(run.transport.requests) == KIT_SETTINGS["max_attempts"] * self.calls_per_check

    @pytest.mark.parametrize("status", [400, 401, 403, 422])
    def test_client_errors_are_not_retried(self, status: int) -> None:
        connector = self.make_connector()
        run = self.run(connector, always=lambda r: httpx.Response(status, json={"error": "x"}))
        result = run.outcomes[0].result
        assert result.outcome is Outcome.ERROR
        assert (result.error_kind, result.error_code) == ("permanent", f"http_{status}")
        assert len(run.transport.requests) == self.calls_per_check
        assert run.sleeps == []

    @pytest.mark.parametrize(
        "body",
        [b"", b"{not json", b"<?xml version='1.0'?><unclosed", b'{"unexpected": [1, 2]}',
         b"[]", b"null", b"\xff\xfe\x00garbage"],
        ids=["empty", "bad-json", "bad-xml", "wrong-shape", "list", "null", "binary"],
    )
    def test_malformed_body_is_a_permanent_error_not_a_crash(self, body: bytes) -> None:
        connector = self.make_connector()
        run = self.run(connector, always=lambda r: httpx.Response(200, content=body))
        result = run.outcomes[0].result
        assert result.outcome is Outcome.ERROR, result
        assert result.error_kind == "permanent"
        assert len(run.transport.requests) == self.calls_per_check

    def test_oversized_response_is_refused(self) -> None:
        connector = self.make_connector()
        big = b"{" + b" " * (KIT_SETTINGS["max_response_bytes"] * 2) + b"}"
        run = self.run(connector, always=lambda r: httpx.Response(200, content=big))
        result = run.outcomes[0].result
        assert (result.error_kind, result.error_code) == ("permanent", "response_too_large")

    def test_circuit_opens_after_consecutive_transient_failures(self) -> None:
        connector = self.make_connector()
        self.run(connector, always=lambda r: httpx.Response(503))
        assert connector.breaker.state == "open"
        run = self.run(connector, route="found")
        result = run.outcomes[0].result
        assert (result.error_kind, result.error_code) == ("circuit_open", "circuit_open")
        assert run.transport.requests == [] and run.outcomes[0].http_calls == 0
        assert run.outcomes[0].disclosed_fields == ()

    def test_circuit_half_opens_after_cooldown_and_closes_on_success(self) -> None:
        connector = self.make_connector()
        self.run(connector, always=lambda r: httpx.Response(503))
        assert connector.breaker.state == "open"
        self.clock_value += KIT_SETTINGS["circuit_cooldown"] + 1
        self.run(connector, route="found")
        assert _state(connector) == "closed"
        run = self.run(connector, route="found")
        assert run.result.outcome is Outcome.FOUND, run.result

    def test_no_personal_data_in_logs_or_error_messages(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        connector = self.make_connector()
        subject = self.full_subject(connector)
        results: list[Result] = []
        for kwargs in self._log_scenarios():
            connector = self.make_connector()
            run = self.run(connector, subject=subject, **kwargs)
            results += [o.result for o in run.outcomes]
        text = caplog.text.lower() + "\n".join(
            f"{r.message} {r.error_code}" for r in results
        ).lower()
        for value in self._pii(subject):
            assert value.lower() not in text, "personal data in a log line or error message"

    def _log_scenarios(self) -> Iterator[dict[str, Any]]:
        yield {"route": "found"}
        yield {"route": "not_found"}
        yield {"always": lambda r: httpx.Response(503)}
        yield {"always": lambda r: httpx.Response(200, content=b"{broken")}
        yield {"always": lambda r: httpx.Response(422, json={"detail": "bad"})}
        yield {"always": lambda r: httpx.Response(429, headers={"Retry-After": "99999"})}


def _state(connector: Connector) -> str:
    return connector.breaker.state


#: Names of the standard tests (parametrised tests count once here).
STANDARD_TESTS: tuple[str, ...] = tuple(
    n for n in vars(ConnectorConformance) if n.startswith("test_")
)


def register_entry_points(
    directory: str | os.PathLike[str],
    dist_name: str,
    entry_points: dict[str, str],
    *,
    import_paths: tuple[str, ...] = (),
    version: str = "0.0.0",
) -> None:
    """Make connectors discoverable through ``importlib.metadata`` without installing.

    Writes a minimal ``<dist>.dist-info`` (METADATA + ``entry_points.txt`` in group
    ``cme.connectors``) into ``directory`` and puts it (and ``import_paths``) on
    ``sys.path`` — the same metadata an installed package has, so discovery goes through
    the real entry-point machinery. For tests of packages that are not installed.
    """
    base = Path(directory)
    info = base / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text(
        "[cme.connectors]\n" + "\n".join(lines) + "\n", encoding="utf-8"
    )
    for path in (*import_paths, str(base)):
        if path not in sys.path:
            sys.path.insert(0, path)
    importlib.invalidate_caches()
