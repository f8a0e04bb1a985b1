"""The shared resilience layer: retries, limits, breaker, size cap, allow-list, runner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from connectors import (
    AgencyHTTP,
    CircuitBreaker,
    CircuitOpen,
    Connector,
    ConnectorSettings,
    Query,
    RateLimiter,
    Result,
    TraceSubject,
    make_client,
    parse_retry_after,
    run_connector,
)
from connectors.testing import DEFAULT_SUBJECT

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Echo(Connector):
    name = "echo"
    version = "1"
    agency = "test"
    fields = frozenset({"surname"})
    path = "/x"

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        url = self.path if self.path.startswith("http") else self.url(self.path)
        resp = await http.post(url, json=query.payload("surname"))
        http.expect(resp, (200,))
        return Result.not_found()


def echo(**settings: object) -> Echo:
    base = {"base_url": "https://agency.test", "backoff_initial": 0.1, **settings}
    return Echo(ConnectorSettings(**base))  # type: ignore[arg-type]


async def nosleep(_: float) -> None:
    return None


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after("Mon, 02 Mar 2026 09:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Mon, 02 Mar 2026 08:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


def test_circuit_breaker_opens_half_opens_and_recloses() -> None:
    t = [0.0]
    b = CircuitBreaker(threshold=2, cooldown=10, clock=lambda: t[0])
    b.record_failure()
    b.before_call("x")
    b.record_failure()
    assert b.state == "open"
    with pytest.raises(CircuitOpen):
        b.before_call("x")
    t[0] = 10.5
    b.before_call("x")  # the trial call
    assert b.state == "half_open"
    with pytest.raises(CircuitOpen):
        b.before_call("x")  # only one trial at a time
    b.record_failure()
    assert b.state == "open" and b.times_opened == 2
    t[0] = 21
    b.before_call("x")
    b.record_success()
    assert b.state == "closed" and b.failures == 0


async def test_rate_limiter_spaces_requests_without_busy_waiting() -> None:
    t = [0.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    lim = RateLimiter(2.0, burst=1, clock=lambda: t[0])
    for _ in range(3):
        await lim.acquire(sleep)
    assert slept == [0.5, 1.0]
    assert await RateLimiter(None).acquire(sleep) == 0.0


async def test_request_to_a_host_outside_the_allow_list_is_a_permanent_error() -> None:
    conn = echo()
    conn.settings = conn.settings.model_copy(update={"base_url": "https://agency.test"})
    conn.path = "https://elsewhere.test/x"  # type: ignore[misc]
    calls = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(200))
    (out,) = await run_connector(conn, [DEFAULT_SUBJECT], transport=transport, sleep=nosleep)
    assert (out.result.error_kind, out.result.error_code) == ("permanent", "host_not_allowed")
    assert calls == [] and out.http_calls == 0 and out.disclosed_fields == ()


async def test_plain_http_is_refused_unless_allowed() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    (out,) = await run_connector(echo(base_url="http://agency.test"), [DEFAULT_SUBJECT],
                                 transport=transport, sleep=nosleep)
    assert out.result.error_code == "insecure_url"
    (ok,) = await run_connector(echo(base_url="http://agency.test", allow_http=True),
                                [DEFAULT_SUBJECT], transport=transport, sleep=nosleep)
    assert ok.result.outcome == "not_found"


async def test_declared_content_length_over_the_cap_is_refused_unread() -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(200, headers={"content-length": "99999999"}, content=b"{}"))
    (out,) = await run_connector(echo(), [DEFAULT_SUBJECT], transport=transport, sleep=nosleep)
    assert out.result.error_code == "response_too_large"


def test_client_is_sized_to_the_concurrency_cap_and_verifies_tls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx's own transport (its pool is looked at); aiohttp's: test_conn_transport.py
    monkeypatch.setenv("CME_HTTP_TRANSPORT", "httpx")
    conn = echo(max_concurrency=7)
    client = make_client(conn)
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 7
    assert client.follow_redirects is False
    assert pool._ssl_context.verify_mode.name == "CERT_REQUIRED"


async def test_concurrency_cap_is_never_exceeded() -> None:
    inflight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await asyncio.sleep(0.005)
        inflight -= 1
        return httpx.Response(200)

    conn = echo(max_concurrency=3, rate_limit=10_000)
    subjects = [TraceSubject(reference=f"R{i}", surname="X") for i in range(20)]
    outs = await run_connector(conn, subjects, transport=httpx.MockTransport(handler))
    assert peak == 3 and len(outs) == 20
    assert [o.subject_reference for o in outs] == [f"R{i}" for i in range(20)]


async def test_a_crashing_connector_becomes_an_error_result_without_its_message() -> None:
    class Broken(Echo):
        async def search(self, query: Query, http: AgencyHTTP) -> Result:
            raise RuntimeError(f"boom {query.surname}")

    conn = Broken(ConnectorSettings(base_url="https://agency.test"))
    seen: list[str] = []
    outs = await run_connector(conn, [DEFAULT_SUBJECT], on_result=lambda o: seen.append(
        o.subject_reference))
    assert outs[0].result.error_code == "connector_failure"
    assert "Brackenthwaite" not in (outs[0].result.message or "")
    assert seen == [DEFAULT_SUBJECT.reference]


async def test_async_on_result_callback_is_awaited() -> None:
    seen: list[str] = []

    async def record(outcome: object) -> None:
        seen.append("x")

    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    await run_connector(echo(), [DEFAULT_SUBJECT] * 2, transport=transport, on_result=record)
    assert seen == ["x", "x"]


async def test_429_counts_as_a_live_agency_for_the_breaker() -> None:
    conn = echo(circuit_threshold=1, max_attempts=2)
    transport = httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": "1"}))
    (out,) = await run_connector(conn, [DEFAULT_SUBJECT], transport=transport, sleep=nosleep)
    assert out.result.error_code == "rate_limited" and out.http_calls == 2
    assert conn.breaker.state == "closed"


async def test_wrong_runner_for_a_deferred_connector_is_a_type_error() -> None:
    from connectors.builtin import DWPConnector

    with pytest.raises(TypeError):
        await run_connector(DWPConnector(ConnectorSettings(base_url="https://d.test")), [])
