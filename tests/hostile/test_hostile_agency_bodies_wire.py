"""The hostile agency bodies of test_hostile_agency_bodies.py, sent over real HTTP and read
on each transport ``CME_HTTP_TRANSPORT`` offers (issue 17, point 2): the XML attacks, bodies
over the cap (declared, endless, gzip and deflate bombs), content codings we do not speak
and JSON nested 100,000 deep end exactly as they do through httpx's mock transport, on
httpx-aiohttp as on httpx's own — and a small compressed answer is still read.

The agency is a loopback server on raw sockets in a thread of its own; it answers each
request with the same ``httpx.Response`` the mock-transport tests build, framed on the wire
as it says (``Content-Length`` or chunked). (A body longer than its declared length cannot
cross a real socket as such — the client reads the declared length — so that case stays
with the mock transport.)
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from test_hostile_agency_bodies import (
    CAP,
    DEEP_BODIES,
    OP_IDS,
    OPERATIONS,
    SETTINGS,
    Endless,
    Run,
    _bomb,
    assert_logs_clean,
    assert_refused,
    respond,
    sentinel_files,  # noqa: F401 - the fixture, used by name
    xml_attacks,
)

from connectors import (
    CheckOutcome,
    Connector,
    ConnectorSettings,
    Outcome,
    run_connector,
    run_deferred_poll,
    run_deferred_submit,
)
from connectors.builtin.border_force import BorderForceConnector
from connectors.builtin.dwp import DWPConnector
from connectors.builtin.housing import HousingConnector, HousingSettings
from connectors.builtin.lpd import LPDConnector
from connectors.builtin.other_la import OtherLAConnector, OtherLASettings
from connectors.testing import DEFAULT_SUBJECT

TRANSPORTS = ("httpx", "aiohttp")
Answer = Callable[[httpx.Request], httpx.Response]


class Wire:
    """A loopback HTTP/1.1 agency answering every request with ``answer(request)``."""

    def __init__(self) -> None:
        self.answer: Answer = respond(b"{}")
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.base = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = (await r.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = [tuple(h.split(": ", 1)) for h in head[1:] if h]
            length = int(dict((k.lower(), v) for k, v in headers).get("content-length", 0))
            body = await r.readexactly(length)
            self.requests += 1
            resp = self.answer(httpx.Request(method, f"{self.base}{target}", headers=headers,
                                             content=body))
            chunked = resp.headers.get("transfer-encoding", "").lower() == "chunked"
            lines = [f"HTTP/1.1 {resp.status_code} {resp.reason_phrase}"]
            lines += [f"{k.decode()}: {v.decode()}" for k, v in resp.headers.raw
                      if k.lower() != b"connection"]
            lines.append("Connection: close")
            w.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            stream: Any = resp.stream
            async for chunk in stream:
                w.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await w.drain()
            if chunked:
                w.write(b"0\r\n\r\n")
            await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return  # the client hung up (a body cut at the cap)
        finally:
            w.close()

    async def _shutdown(self) -> None:
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
def wire() -> Iterator[Wire]:
    w = Wire()
    yield w
    w.stop()


def make(name: str, base: str) -> Connector:
    connector: Connector = {
        "other_la": lambda: OtherLAConnector(OtherLASettings(las={"852": f"{base}/la852"})),
        "housing": lambda: HousingConnector(HousingSettings(base_url=f"{base}/housing",
                                                            councils=["eastleigh"])),
        "lpd": lambda: LPDConnector(ConnectorSettings(base_url=f"{base}/lpd")),
        "dwp": lambda: DWPConnector(ConnectorSettings(base_url=f"{base}/dwp")),
        "border_force": lambda: BorderForceConnector(
            ConnectorSettings(base_url=f"{base}/border-force")),
    }[name]()
    connector.settings = connector.settings.model_copy(update={**SETTINGS, "allow_http": True})
    return connector


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CME_HTTP_TRANSPORT", request.param)
    return str(request.param)


def check(wire: Wire, name: str, operation: str, answer: Answer) -> Run:
    """One check of the synthetic child over real HTTP, on the configured transport."""
    connector = make(name, wire.base)
    wire.answer, wire.requests = answer, 0

    async def _no_sleep(_seconds: float) -> None:
        return None

    async def go() -> list[CheckOutcome]:
        if operation == "search":
            return await run_connector(connector, [DEFAULT_SUBJECT], sleep=_no_sleep)
        if operation == "submit":
            return await run_deferred_submit(connector, [DEFAULT_SUBJECT], sleep=_no_sleep)
        return await run_deferred_poll(connector, [(DEFAULT_SUBJECT.reference, "REF-0001")],
                                       sleep=_no_sleep)

    (outcome,) = asyncio.run(go())
    return Run(outcome, wire.requests)


@pytest.mark.parametrize("attack", ["billion-laughs", "quadratic-blowup",
                                    "external-entity-file", "external-entity-http",
                                    "parameter-entity", "external-dtd-entity"])
def test_xml_attacks_in_a_ctf_answer_are_refused(
        attack: str, sentinel_files: dict[str, str],  # noqa: F811
        caplog: pytest.LogCaptureFixture, wire: Wire, transport: str) -> None:
    caplog.set_level(logging.DEBUG)
    body = xml_attacks(sentinel_files)[attack].encode()
    run = check(wire, "lpd", "search", respond(body, **{"content-type": "application/xml"}))
    assert_refused(run, "malformed_response", body_markers=("lol", "AAAA", "ENTITY"))
    assert run.requests == 1  # a permanent error: not asked again
    assert_logs_clean(caplog, ("lol", "AAAA", "ENTITY"))


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OP_IDS)
def test_a_declared_oversized_body_is_refused(name: str, operation: str, wire: Wire,
                                              transport: str) -> None:
    run = check(wire, name, operation, respond(b"[" + b"0," * (CAP // 2) + b"0]"))
    assert_refused(run, "response_too_large")


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OP_IDS)
def test_an_endless_body_is_cut_at_the_cap(name: str, operation: str, wire: Wire,
                                          transport: str) -> None:
    run = check(wire, name, operation,
                lambda r: httpx.Response(200, content=Endless().stream()))
    assert_refused(run, "response_too_large")
    assert run.requests == 1  # a permanent error: not asked again


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize(("name", "operation"), [("other_la", "search"), ("lpd", "search"),
                                                 ("dwp", "poll")])
def test_a_compression_bomb_is_cut_at_the_cap_in_bounded_memory(
        name: str, operation: str, coding: str, wire: Wire, transport: str) -> None:
    bomb = _bomb(coding)  # ~60 kB that inflate to 60 MB

    def answer(request: httpx.Request) -> httpx.Response:
        # streamed: an httpx.Response given the bytes would inflate them itself, here
        async def sent() -> AsyncIterator[bytes]:
            yield bomb

        return httpx.Response(200, content=sent(), headers={
            "content-encoding": coding, "content-length": str(len(bomb))})

    tracemalloc.start()
    try:
        run = check(wire, name, operation, answer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_refused(run, "response_too_large")
    assert peak < 8 * CAP, f"decoding held {peak / 1e6:.0f} MB for a {CAP / 1e6:.0f} MB cap"


def test_a_small_compressed_answer_is_still_read(wire: Wire, transport: str) -> None:
    body = gzip.compress(json.dumps({"result": "no_match"}).encode())
    run = check(wire, "other_la", "search", respond(body, **{"content-encoding": "gzip"}))
    assert run.result.outcome is Outcome.NOT_FOUND, run.result


@pytest.mark.parametrize("coding", ["br", "gzip, gzip", "compress"])
def test_a_content_coding_we_do_not_speak_is_refused(coding: str, wire: Wire,
                                                     transport: str) -> None:
    async def once() -> AsyncIterator[bytes]:
        yield b"\x1b\x00\x00\x00garbage"

    run = check(wire, "housing", "search", lambda r: httpx.Response(
        200, content=once(), headers={"content-encoding": coding}))
    assert_refused(run, "malformed_response")


@pytest.mark.parametrize("shape", sorted(DEEP_BODIES))
@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OP_IDS)
def test_json_nested_100k_deep_is_refused(name: str, operation: str, shape: str,
                                          caplog: pytest.LogCaptureFixture, wire: Wire,
                                          transport: str) -> None:
    caplog.set_level(logging.DEBUG)
    run = check(wire, name, operation, respond(DEEP_BODIES[shape]))
    assert_refused(run, "malformed_response")
    assert_logs_clean(caplog)
