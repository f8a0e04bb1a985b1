"""The Mendix OData feed goes through the agencies' HTTP layer (README, "Connector authors";
docs/architecture.md): Retry-After is honoured, an oversized page is refused while it streams,
and a circuit breaker stops calling a feed that keeps failing — over real HTTP, against a
local server that plays the feed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flows.settings import Settings
from tasks.odata import MendixFeedError, feed_breaker, fetch_mendix_changes

PAGE = json.dumps({"value": [{"ID": 1, "ChangedDate": "2026-11-20T10:00:00Z",
                              "mendix_reference": "CME-RES-000001"}]}).encode()


@dataclass
class Script:
    """What the feed answers, in order; the last answer repeats. Each: (status, headers, body)."""

    answers: list[tuple[int, dict[str, str], bytes]]
    requests: list[str] = field(default_factory=list)

    def next(self) -> tuple[int, dict[str, str], bytes]:
        n = len(self.requests) - 1
        return self.answers[min(n, len(self.answers) - 1)]


@pytest.fixture
def feed() -> Iterator[tuple[Script, str]]:
    script = Script(answers=[(200, {}, PAGE)])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            script.requests.append(self.path)
            status, headers, body = script.next()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}/odata"
    finally:
        server.shutdown()
        server.server_close()


def _read(clean_db: str, base: str, **kw: object):  # type: ignore[no-untyped-def]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    settings = Settings(database_url=clean_db, mendix_base_url=base)
    records, _ = asyncio.run(fetch_mendix_changes(settings, sleep=sleep, **kw))  # type: ignore[arg-type]
    return records, slept


def test_a_429_waits_as_long_as_retry_after_says_then_reads_the_page(
        clean_db: str, feed: tuple[Script, str]) -> None:
    script, base = feed
    script.answers = [(429, {"Retry-After": "7"}, b""), (200, {}, PAGE)]
    records, slept = _read(clean_db, base)
    assert len(records) == 1 and len(script.requests) == 2
    assert slept == [7.0]  # the feed's own wait, not the back-off's half a second


def test_a_retry_after_over_the_cap_is_not_waited_for(
        clean_db: str, feed: tuple[Script, str]) -> None:
    script, base = feed
    script.answers = [(429, {"Retry-After": "3600"}, b"")]
    with pytest.raises(MendixFeedError, match="Retry-After") as info:
        _read(clean_db, base)
    assert len(script.requests) == 1
    assert "127.0.0.1" not in str(info.value)  # one line, no URL


def test_an_oversized_page_is_refused_and_nothing_is_returned(
        clean_db: str, feed: tuple[Script, str]) -> None:
    script, base = feed
    big = json.dumps({"value": [{"mendix_reference": "CME-RES-BIG",
                                 "reason": "w" * 50_000}]}).encode()
    script.answers = [(200, {}, big)]
    with pytest.raises(MendixFeedError, match="over 10000 bytes"):
        _read(clean_db, base, max_page_bytes=10_000)
    assert len(script.requests) == 1  # refused, not retried


def test_the_breaker_stops_calling_a_feed_that_keeps_failing(
        clean_db: str, feed: tuple[Script, str]) -> None:
    script, base = feed
    script.answers = [(503, {}, b"")]
    breaker = feed_breaker()  # what the intake flow keeps for its process
    with pytest.raises(MendixFeedError, match="HTTP 503"):
        _read(clean_db, base, breaker=breaker)
    assert len(script.requests) == 4  # four attempts, as before
    with pytest.raises(MendixFeedError, match="circuit open"):
        _read(clean_db, base, breaker=breaker)
    assert len(script.requests) == 5  # the fifth failure in a row opened it
    with pytest.raises(MendixFeedError, match="circuit open"):
        _read(clean_db, base, breaker=breaker)
    assert len(script.requests) == 5  # open: the feed is not called at all
    assert breaker.state == "open"

