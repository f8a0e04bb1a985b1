"""Retries, rate limiting, concurrency cap, circuit breaker, size cap and host allow-list.

This is the only place these live; connectors just call :class:`AgencyHTTP`. Logs name the
connector, the HTTP status and the attempt — never a URL, a body or a header value.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from ._bounded import ACCEPT_ENCODING, BoundedBody
from ._errors import (
    AgencyTimeout,
    AgencyUnavailable,
    CircuitOpen,
    ConnectionFailed,
    HostNotAllowed,
    MalformedResponse,
    PermanentError,
    RateLimited,
    RequestRejected,
    ResponseTooLarge,
    TransientError,
)
from ._transport import aiohttp_failure

__all__ = [
    "AgencyChannel",
    "AgencyHTTP",
    "AgencyResponse",
    "CircuitBreaker",
    "RateLimiter",
    "RetryPolicy",
    "Sleep",
    "parse_retry_after",
]

log = logging.getLogger("connectors")

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")
Clock = Callable[[], float]
WallClock = Callable[[], datetime]

_RETRY_STATUSES = frozenset({408, 500, 502, 503, 504}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    retry_after_cap: float = 30.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff for ``attempt`` (1-based) with jitter, capped."""
        base: float = min(self.backoff_max, self.backoff_initial * 2.0 ** (attempt - 1))
        return float(min(self.backoff_max, base + rng.uniform(0, self.backoff_initial)))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class RateLimiter:
    """Requests-per-second limiter for one connector, in process.

    Virtual scheduling: each caller reserves the next free slot and sleeps until it, so it
    never busy-waits and works with an injected sleep. ``rate=None`` means unlimited.
    """

    def __init__(self, rate: float | None, *, burst: float | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate or 1.0)
        self.clock = clock
        self._tokens = self.burst
        self._stamp: float | None = None

    async def acquire(self, sleep: Sleep) -> float:
        if self.rate is None:
            return 0.0
        now = self.clock()
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        await sleep(wait)
        return wait


class CircuitBreaker:
    """Opens after ``threshold`` consecutive transient failures; half-opens after ``cooldown``.

    Half-open lets one trial call through: success closes the circuit, failure re-opens it.
    A 4xx or a 429 is an answer from a live agency, so it counts as success here.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 60.0, *,
                 clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.state: Literal["closed", "open", "half_open"] = "closed"
        self.failures = 0
        self.opened_at: float | None = None
        self.times_opened = 0

    def before_call(self, name: str) -> None:
        if self.state == "open":
            assert self.opened_at is not None
            if self.clock() - self.opened_at >= self.cooldown:
                self.state = "half_open"
                return
            raise CircuitOpen(f"circuit open for connector {name}; not calling the agency")
        if self.state == "half_open":
            # a trial call is already in flight
            raise CircuitOpen(f"circuit half-open for connector {name}; trial call in flight")

    def record_success(self) -> None:
        self.state = "closed"
        self.failures = 0

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            if self.state != "open":
                self.times_opened += 1
            self.state = "open"
            self.opened_at = self.clock()


@dataclass
class AgencyResponse:
    """A fully read (size-capped) response."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    @property
    def text(self) -> str:
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedResponse("response body is not UTF-8") from exc

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except (ValueError, RecursionError) as exc:
            raise MalformedResponse("response body is not valid JSON") from exc


@dataclass
class AgencyChannel:
    """Everything shared by one connector's checks in a run: client, limits, breaker."""

    name: str
    client: httpx.AsyncClient
    policy: RetryPolicy
    limiter: RateLimiter
    breaker: CircuitBreaker
    max_concurrency: int
    allowed_hosts: frozenset[str]
    allow_http: bool = False
    max_response_bytes: int = 2_000_000
    attempt_deadline: float = 15.0
    sleep: Sleep = asyncio.sleep
    now: WallClock = field(default=lambda: datetime.now(UTC))
    headers: Mapping[str, str] = field(default_factory=dict)
    # Set when the channel cannot be used at all (its credentials could not be read): every
    # request fails at once with this permanent error, so each check records it.
    refusal: tuple[str, str] | None = None
    rng: random.Random = field(default_factory=random.Random)
    _queue: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = field(
        init=False, default_factory=deque)
    _workers: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    async def run(self, send: Callable[[], Awaitable[T]]) -> T:
        """Run ``send()`` with at most ``max_concurrency`` sends in flight on this channel.

        Up to ``max_concurrency`` worker tasks take the sends in arrival order, and a worker
        that finishes one starts the next at once. With a semaphore instead, a finished send's
        pooled connection sat idle until the event loop woke the next waiter, and httpcore
        checks every idle connection's socket (two system calls) on each request: the profile
        of a night showed a fifth of the flow's CPU there (README, "Performance").
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((send, future))
        # Count live workers only: one that just found the queue empty has finished, but is
        # dropped from the set by a callback that has not run yet when a caller sends its next
        # request without awaiting in between (the Mendix feed's pages, one at a time) — the
        # request would then wait for a worker that never comes.
        if sum(not w.done() for w in self._workers) < self.max_concurrency:
            worker = asyncio.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        return await future

    async def _work(self) -> None:
        while self._queue:
            send, future = self._queue.popleft()
            if future.done():  # its caller was cancelled while it queued
                continue
            try:
                result = await send()
            except asyncio.CancelledError:
                future.cancel()
                raise
            except BaseException as exc:  # noqa: BLE001 - the caller gets it, whatever it is
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)


@functools.lru_cache(maxsize=4096)
def _host_and_scheme(url: str) -> tuple[str, str]:
    # A night sends each of a few dozen URLs thousands of times: parse each once.
    parsed = httpx.URL(url)
    return (parsed.host or "").lower(), parsed.scheme


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and exc.retryable


class AgencyHTTP:
    """The HTTP client a connector gets for one check. Counts the calls it makes.

    Retries 429 (honouring ``Retry-After``), 408, 5xx, timeouts and connection errors with
    backoff; returns every other status to the connector. Raises :mod:`connectors` errors.
    """

    def __init__(self, channel: AgencyChannel) -> None:
        self._ch = channel
        self.calls = 0

    @property
    def name(self) -> str:
        return self._ch.name

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> AgencyResponse:
        ch = self._ch
        if ch.refusal is not None:
            message, code = ch.refusal
            raise PermanentError(message, code=code)
        self._check_url(url)
        merged = {**ch.headers, **(headers or {})}

        async def send() -> AgencyResponse:
            return await self._send_once(method, url, json=json, params=params,
                                         headers=merged, content=content)

        # The first attempt runs outside tenacity: nearly every request needs no retry, and
        # tenacity's bookkeeping was 5 % of a night's flow CPU (issue 17's profile).
        try:
            return await send()
        except Exception as exc:
            if not _retryable(exc) or ch.policy.max_attempts <= 1:
                raise
            first_failure: list[BaseException] = [exc]
        # A retry: tenacity takes over from attempt 1, whose failure it is handed, so the
        # attempts, waits (Retry-After), logs and the final error are exactly as before.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(ch.policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            sleep=ch.sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        async for attempt in retrying:
            with attempt:
                if first_failure:
                    raise first_failure.pop()
                return await send()
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, url: str, *, params: Mapping[str, str] | None = None) -> AgencyResponse:
        return await self.request("GET", url, params=params)

    async def post(self, url: str, *, json: Any = None) -> AgencyResponse:
        return await self.request("POST", url, json=json)

    async def get_json(self, url: str, *, ok: Iterable[int] = (200,)) -> Any:
        return self.expect(await self.get(url), ok).json()

    async def post_json(self, url: str, json: Any, *, ok: Iterable[int] = (200, 201, 202)) -> Any:
        return self.expect(await self.post(url, json=json), ok).json()

    def expect(self, response: AgencyResponse, ok: Iterable[int]) -> AgencyResponse:
        """Return ``response`` if its status is in ``ok``; otherwise raise a permanent error."""
        if response.status_code in set(ok):
            return response
        raise RequestRejected(
            f"{self.name}: agency answered HTTP {response.status_code}",
            code=f"http_{response.status_code}", status_code=response.status_code,
        )

    # internals -------------------------------------------------------------------------

    def _check_url(self, url: str) -> None:
        try:
            host, scheme = _host_and_scheme(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise HostNotAllowed(f"{self.name}: invalid URL") from exc
        if host not in self._ch.allowed_hosts:
            raise HostNotAllowed(f"{self.name}: host is not in the connector's allow-list")
        if scheme != "https" and not (scheme == "http" and self._ch.allow_http):
            raise HostNotAllowed(
                f"{self.name}: only https is allowed", code="insecure_url"
            )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return float(exc.retry_after)
        return self._ch.policy.backoff(state.attempt_number, self._ch.rng)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = getattr(exc, "code", "?")
        log.info("connector=%s attempt=%d code=%s retrying", self.name, state.attempt_number, code)

    async def _send_once(self, method: str, url: str, **kwargs: Any) -> AgencyResponse:
        ch = self._ch
        ch.breaker.before_call(ch.name)
        await ch.limiter.acquire(ch.sleep)
        response = await ch.run(lambda: self._attempt(method, url, **kwargs))
        status = response.status_code
        if status == 429:
            wait = parse_retry_after(response.headers.get("retry-after"), ch.now())
            if wait is not None and wait > ch.policy.retry_after_cap:
                err = RateLimited(
                    f"{ch.name}: rate limited; Retry-After {wait:.0f}s is over the cap",
                    retry_after=wait, retryable=False,
                )
                raise err
            raise RateLimited(f"{ch.name}: rate limited (HTTP 429)", retry_after=wait)
        if status in _RETRY_STATUSES:
            raise AgencyUnavailable(
                f"{ch.name}: agency answered HTTP {status}", code=f"http_{status}",
                status_code=status,
            )
        return response

    async def _attempt(self, method: str, url: str, **kwargs: Any) -> AgencyResponse:
        """One send, run by the channel within its concurrency cap; errors classified."""
        ch = self._ch
        if ch.breaker.state == "open":
            # it opened while this request queued for a slot: do not send it after all
            raise CircuitOpen(f"circuit open for connector {ch.name}; not calling the agency")
        self.calls += 1
        try:
            async with asyncio.timeout(ch.attempt_deadline):
                try:
                    response = await self._stream(method, url, **kwargs)
                except Exception as exc:
                    # httpx-aiohttp's mapping differs from httpx's (connectors/_transport.py)
                    as_httpx = aiohttp_failure(exc)
                    if as_httpx is None:
                        raise
                    raise as_httpx("transport failure") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            ch.breaker.record_failure()
            raise AgencyTimeout(f"{ch.name}: request timed out") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            # includes ReadError/WriteError/ConnectError: keep-alive races, resets, refusals
            ch.breaker.record_failure()
            raise ConnectionFailed(
                f"{ch.name}: connection failed ({type(exc).__name__})"
            ) from exc
        except httpx.DecodingError as exc:
            ch.breaker.record_success()
            raise MalformedResponse(f"{ch.name}: response could not be decoded") from exc
        except httpx.HTTPError as exc:
            raise PermanentError(
                f"{ch.name}: HTTP client error ({type(exc).__name__})", code="http_client_error"
            ) from exc
        # The breaker hears of this answer before the worker takes its next send, so a dead
        # agency's 5xx stop the sends queued behind it. A 4xx or a 429 is a live agency.
        if response.status_code in _RETRY_STATUSES:
            ch.breaker.record_failure()
        else:
            ch.breaker.record_success()
        return response

    async def _stream(self, method: str, url: str, **kwargs: Any) -> AgencyResponse:
        cap = self._ch.max_response_bytes
        kwargs["headers"] = {"Accept-Encoding": ACCEPT_ENCODING, **(kwargs.get("headers") or {})}
        async with self._ch.client.stream(method, url, **kwargs) as resp:
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cap:
                raise ResponseTooLarge(f"{self._ch.name}: response over {cap} bytes")
            if resp.is_stream_consumed:  # read already (a mock transport), decoded by httpx
                if len(resp.content) > cap:
                    raise ResponseTooLarge(f"{self._ch.name}: response over {cap} bytes")
                return AgencyResponse(resp.status_code, resp.headers, resp.content)
            # raw chunks, decoded here within the cap (httpx would inflate a chunk whole)
            body = BoundedBody(resp.headers.get("content-encoding"), cap, self._ch.name)
            async for raw in resp.aiter_raw():
                body.feed(raw)
            return AgencyResponse(resp.status_code, resp.headers, body.content())


@functools.lru_cache(maxsize=16)
def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A verifying TLS context (optionally with a private CA bundle). Verification stays on.

    Shared per CA bundle: building one loads the system's certificates (milliseconds of CPU),
    and a client is made per connector per chunk.
    """
    return ssl.create_default_context(cafile=ca_bundle)
