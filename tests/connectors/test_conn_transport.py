"""Issue 17, point 2: the agencies' transport (``CME_HTTP_TRANSPORT``), and proof that the
resilience layer ends every failure the same way on httpx-aiohttp as on httpx's own.

Each case is a real HTTP exchange with a loopback server written on raw sockets (so it can
misbehave as no framework would: reset, cut a body short, answer with something that is not
HTTP). A check runs through the real runner and resilience layer on each transport; its
outcome (kind, code, status, message, calls made, waits taken) must be the one expected, and
the same on both.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from connectors import (
    AgencyHTTP,
    CheckOutcome,
    Connector,
    ConnectorSettings,
    Query,
    Result,
    make_client,
    run_connector,
)
from connectors._transport import HTTP_TRANSPORTS, aiohttp_failure, http_transport
from connectors.testing import DEFAULT_SUBJECT

TRANSPORTS = ("httpx", "aiohttp")
CAP = 100_000
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _head(status: int, headers: dict[str, str] | None = None, length: int | None = 0) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(status: int, body: bytes = b"", **headers: str) -> Handler:
    async def h(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(_head(status, headers, len(body)) + body)
        await w.drain()
    return h


def _bomb(coding: str) -> bytes:
    zeros = b"\0" * (20 * CAP)
    return gzip.compress(zeros) if coding == "gzip" else zlib.compress(zeros)


async def _hang(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3)


async def _reset(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    sock = w.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()  # RST, not FIN


async def _close(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.close()


async def _truncated(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(_head(200, {"Content-Type": "application/json"}, 100) + b'{"found": tr')
    await w.drain()
    w.close()


async def _endless(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(_head(200, {"Transfer-Encoding": "chunked"}, None))
    chunk = b"x" * 8192
    try:
        while True:
            w.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await w.drain()
    except (ConnectionError, OSError):
        return


async def _garbage(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"SMTP READY\r\nthis is not HTTP\r\n\r\n")
    await w.drain()
    w.close()


def _retry_after_date() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)


#: name -> (what the server does, the check's (kind, code, status), HTTP calls made)
CASES: dict[str, tuple[Callable[[], Handler], tuple[str | None, str | None, int | None], int]] = {
    "ok": (lambda: _answer(200, b'{"found": false}'), (None, None, None), 1),
    "5xx": (lambda: _answer(503), ("transient", "http_503", 503), 2),
    "429_seconds": (lambda: _answer(429, **{"Retry-After": "1"}),
                    ("transient", "rate_limited", 429), 2),
    "429_http_date": (lambda: _answer(429, **{"Retry-After": _retry_after_date()}),
                      ("transient", "rate_limited", 429), 2),
    "read_timeout": (lambda: _hang, ("transient", "timeout", None), 2),
    "refused": (lambda: _hang, ("transient", "connection_error", None), 2),  # port closed
    "reset": (lambda: _reset, ("transient", "connection_error", None), 2),
    "closed_without_answer": (lambda: _close, ("transient", "connection_error", None), 2),
    "truncated": (lambda: _truncated, ("transient", "connection_error", None), 2),
    "not_http": (lambda: _garbage, ("transient", "connection_error", None), 2),
    "404": (lambda: _answer(404), ("permanent", "http_404", 404), 1),
    "not_json": (lambda: _answer(200, b"<html>", **{"Content-Type": "application/json"}),
                 ("permanent", "malformed_response", None), 1),
    "json_40k_deep": (lambda: _answer(200, b"[" * 40_000 + b"]" * 40_000),
                       ("permanent", "malformed_response", None), 1),
    "declared_oversized": (lambda: _answer(200, b"x" * (CAP + 1)),
                           ("permanent", "response_too_large", None), 1),
    "endless": (lambda: _endless, ("permanent", "response_too_large", None), 1),
    "gzip_bomb": (lambda: _answer(200, _bomb("gzip"), **{"Content-Encoding": "gzip"}),
                  ("permanent", "response_too_large", None), 1),
    "deflate_bomb": (lambda: _answer(200, _bomb("deflate"), **{"Content-Encoding": "deflate"}),
                     ("permanent", "response_too_large", None), 1),
    "unknown_coding": (lambda: _answer(200, b"{}", **{"Content-Encoding": "br"}),
                       ("permanent", "malformed_response", None), 1),
}


class Agency:
    """A loopback HTTP/1.1 server on raw sockets, in a thread of its own; ``handler`` answers
    every request (set per test)."""

    def __init__(self) -> None:
        self.handler: Handler = _answer(200)
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        # speaks first, in plain text: what a TLS client meets at a port that is not TLS
        self.plain = self.loop.run_until_complete(
            asyncio.start_server(self._blurt, "127.0.0.1", 0))
        self.plain_port = self.plain.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another on this connection
                head = await r.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                await r.readexactly(length)
                self.requests += 1
                await self.handler(r, w)
                if w.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        finally:
            w.close()

    async def _blurt(self, _r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        w.close()

    async def _shutdown(self) -> None:
        self.plain.close()
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def agency() -> Iterator[Agency]:
    a = Agency()
    yield a
    a.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on return: nobody listens there


class Lookup(Connector):
    name = "lookup"
    version = "1"
    agency = "test"
    fields = frozenset({"surname"})

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        body = await http.post_json(self.url("/v1/search"), query.payload("surname"),
                                    ok=(200,))
        return Result.found() if body.get("found") else Result.not_found()


def lookup(port: int) -> Lookup:
    return Lookup(ConnectorSettings(
        base_url=f"http://127.0.0.1:{port}", allow_http=True, max_attempts=2,
        backoff_initial=0.0, backoff_max=0.0, timeout=0.5, connect_timeout=0.5,
        retry_after_cap=5.0, max_response_bytes=CAP, circuit_threshold=100))


def check(case: str, transport: str, agency: Agency, monkeypatch: pytest.MonkeyPatch
          ) -> tuple[CheckOutcome, list[float]]:
    monkeypatch.setenv("CME_HTTP_TRANSPORT", transport)
    make, _, _ = CASES[case]
    agency.handler = make()
    port = _closed_port() if case == "refused" else agency.port
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the waits are recorded, not slept
        waits.append(seconds)

    (out,) = asyncio.run(run_connector(lookup(port), [DEFAULT_SUBJECT], sleep=sleep))
    return out, waits


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_ends_as_it_did_on_httpx(case: str, transport: str, agency: Agency,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out, waits = check(case, transport, agency, monkeypatch)
    _, (kind, code, status), calls = CASES[case]
    r = out.result
    assert (r.error_kind, r.error_code, r.status_code) == (kind, code, status), r
    assert out.http_calls == calls
    if case == "429_seconds":
        assert waits == [1.0]
    elif case == "429_http_date":
        assert len(waits) == 1 and 0.5 <= waits[0] <= 2.0, waits


@pytest.mark.parametrize("case", list(CASES))
def test_both_transports_give_the_same_outcome(case: str, agency: Agency,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole result, its PII-free message included, is the same on both."""
    seen = {}
    for transport in TRANSPORTS:
        out, waits = check(case, transport, agency, monkeypatch)
        seen[transport] = (out.result.model_dump(), out.http_calls, out.disclosed_fields,
                           [round(w) for w in waits])
    assert seen["aiohttp"] == seen["httpx"]


def test_the_default_transport_is_aiohttp_and_httpx_is_selectable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from httpx_aiohttp import AiohttpTransport

    monkeypatch.delenv("CME_HTTP_TRANSPORT", raising=False)
    assert http_transport() == "aiohttp"
    conn = lookup(1)
    assert isinstance(make_client(conn)._transport, AiohttpTransport)
    monkeypatch.setenv("CME_HTTP_TRANSPORT", "httpx")
    assert isinstance(make_client(conn)._transport, httpx.AsyncHTTPTransport)
    monkeypatch.setenv("CME_HTTP_TRANSPORT", "curl")
    with pytest.raises(ValueError, match=r"^setting CME_HTTP_TRANSPORT is invalid: use one of "
                                         r"aiohttp, httpx$"):
        make_client(conn)


def test_one_tls_context_per_ca_bundle_is_built_once() -> None:
    """A client is made per connector per chunk: the system's certificates are loaded once
    per CA bundle, not per client. Verification stays on."""
    from connectors._resilience import tls_context

    first = tls_context(None)
    assert tls_context(None) is first
    assert first.verify_mode is ssl.CERT_REQUIRED and first.check_hostname


async def test_an_agency_client_sends_back_no_cookie_an_answer_set() -> None:
    """Each enquiry stands alone: a cookie set by one agency answer would otherwise go back
    with every later enquiry (about other children) and tie them together."""
    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=abc123; Path=/"},
                              json={"ok": True})

    with respx.mock(using="httpx") as mock:
        mock.post("http://127.0.0.1:1/x").mock(side_effect=answer)
        async with make_client(lookup(1), transport=httpx.AsyncHTTPTransport()) as client:
            for _ in range(3):
                assert (await client.post("http://127.0.0.1:1/x", json={})).status_code == 200
            assert not client.cookies
            with pytest.raises(ValueError, match="keep no cookies"):
                client.cookies = {"a": "b"}  # type: ignore[assignment]
    assert sent == [None, None, None]


def test_the_settings_know_the_same_transports() -> None:
    from typing import get_args

    from flows.settings import Settings

    assert get_args(Settings.model_fields["http_transport"].annotation) == HTTP_TRANSPORTS
    assert Settings.model_fields["http_transport"].default == "aiohttp"


async def test_the_aiohttp_client_is_sized_to_the_cap_and_verifies_tls(
        agency: Agency, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_HTTP_TRANSPORT", "aiohttp")
    conn = Lookup(ConnectorSettings(base_url=f"http://127.0.0.1:{agency.port}",
                                    allow_http=True, max_concurrency=7))
    agency.handler = _answer(200, b'{"found": true}')
    async with make_client(conn) as client:
        transport: Any = client._transport
        assert transport.ssl_context.verify_mode == ssl.CERT_REQUIRED
        await client.get(f"http://127.0.0.1:{agency.port}/")
        assert transport.client.connector.limit == 7
        assert transport.client.connector._ssl is transport.ssl_context


async def test_tls_verification_failure_is_a_connection_error_on_both(
        agency: Agency, monkeypatch: pytest.MonkeyPatch) -> None:
    """An https URL at a server that does not speak TLS: a failed connection on both
    transports, never an answer."""
    for transport in TRANSPORTS:
        monkeypatch.setenv("CME_HTTP_TRANSPORT", transport)
        conn = Lookup(ConnectorSettings(base_url=f"https://127.0.0.1:{agency.plain_port}",
                                        max_attempts=1, timeout=1.0, connect_timeout=1.0))
        (out,) = await run_connector(conn, [DEFAULT_SUBJECT])
        assert (out.result.error_kind, out.result.error_code) == (
            "transient", "connection_error"), (transport, out.result)


def test_an_error_not_from_aiohttp_is_left_as_it_is() -> None:
    assert aiohttp_failure(httpx.ReadTimeout("x")) is None
    assert aiohttp_failure(ValueError("x")) is None


def test_respx_intercepts_at_the_client_whatever_the_transport(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that mock agencies with respx use ``respx.mock(using="httpx")``: it replaces
    the client's transport, so it holds on aiohttp too (respx's default mocks httpcore,
    which aiohttp never calls)."""
    for transport in TRANSPORTS:
        monkeypatch.setenv("CME_HTTP_TRANSPORT", transport)
        with respx.mock(assert_all_mocked=True, using="httpx") as router:
            route = router.post("https://agency.test/v1/search").respond(
                200, json={"found": False})
            conn = Lookup(ConnectorSettings(base_url="https://agency.test"))
            (out,) = asyncio.run(run_connector(conn, [DEFAULT_SUBJECT]))
        assert route.call_count == 1 and out.result.outcome.value == "not_found", transport
