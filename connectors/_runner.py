"""Run one connector over a batch of subjects: minimised queries, one client, no raising.

These are the functions a Prefect task calls with a chunk of a few hundred referrals. One
``httpx.AsyncClient`` per connector, its pool no larger than the connector's concurrency cap
(docs/architecture.md, "Measured facts"). A single subject's failure becomes an error result.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import xml.etree.ElementTree as ET  # noqa: S405 - only for the ParseError type
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Literal, NamedTuple, TypedDict, Unpack

import httpx
from pydantic import ValidationError

from ._contract import Connector
from ._errors import ConnectorError
from ._models import CheckOutcome, Query, Result, TraceSubject
from ._resilience import AgencyChannel, AgencyHTTP, RetryPolicy, Sleep, tls_context
from ._transport import http_transport, make_transport
from .secrets import SecretBlockError

__all__ = [
    "Enquiry",
    "HealthReport",
    "OnResult",
    "RunOptions",
    "build_query",
    "check_health",
    "make_client",
    "run_connector",
    "run_deferred_poll",
    "run_deferred_submit",
]

log = logging.getLogger("connectors")

OnResult = Callable[[CheckOutcome], Awaitable[None] | None]

# Raised by parsing code on bodies that are well-formed but not what the wire API promised.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, ValidationError,
                 ET.ParseError)


class Enquiry(NamedTuple):
    """An open deferred enquiry: whose it is, and the agency's reference for it."""

    subject_reference: str
    agency_reference: str


class HealthReport(NamedTuple):
    connector: str
    ok: bool
    detail: str
    http_calls: int


def build_query(subject: TraceSubject, connector: Connector | type[Connector]) -> Query:
    """The minimised query: only the fields ``connector`` declares, nothing else."""
    declared = frozenset(connector.fields)
    return Query({f: getattr(subject, f) for f in declared}, declared)


class _NoCookies(httpx.Cookies):
    """An empty jar that keeps nothing an answer sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _AgencyClient(httpx.AsyncClient):
    """An ``AsyncClient`` that keeps no cookies. Each check is its own request: a cookie one
    agency answer sets is never sent back with the next enquiry (about another child), so
    nothing links the LA's enquiries beyond what each one discloses. It also skips httpx's
    per-response cookie parsing, 6 % of a night's flow CPU (issue 17's profile)."""

    @property
    def cookies(self) -> httpx.Cookies:
        jar = self.__dict__.get("_no_cookies")
        if jar is None:
            jar = self.__dict__["_no_cookies"] = _NoCookies()
        return jar

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        if cookies:
            raise ValueError("agency clients keep no cookies")


def make_client(
    connector: Connector, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An ``AsyncClient`` sized to the connector: pool = its concurrency cap, TLS verified.

    Its transport is ``transport`` when given (the sandbox's, a test's), else the one
    ``CME_HTTP_TRANSPORT`` names (connectors/_transport.py); a bad value of that setting
    raises ``ValueError`` naming it.
    """
    s = connector.settings
    cap = connector.effective_max_concurrency
    limits = httpx.Limits(max_connections=cap, max_keepalive_connections=cap)
    verify = tls_context(s.ca_bundle)
    if transport is None:
        transport = make_transport(http_transport(), verify=verify, limits=limits)
    return _AgencyClient(
        limits=limits,
        timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
        verify=verify,
        follow_redirects=False,
        transport=transport,
        headers={"User-Agent": f"cme-tracing {connector.name}/{connector.version}"},
    )


@asynccontextmanager
async def _channel(
    connector: Connector,
    client: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
    sleep: Sleep,
    now: Callable[[], datetime] | None,
) -> AsyncIterator[AgencyChannel]:
    s = connector.settings
    refusal: tuple[str, str] | None = None
    try:
        # In a thread: a key held in a Prefect Secret block is read over the network with
        # blocking retries, which must not stall the other agencies' requests on this loop.
        headers = await asyncio.to_thread(connector.auth_headers)
    except SecretBlockError as exc:  # the message names the setting and block, no secret
        headers, refusal = {}, (str(exc), "credentials_unavailable")
    owned = client is None
    http_client = client if client is not None else make_client(connector, transport=transport)
    try:
        yield AgencyChannel(
            name=connector.name,
            client=http_client,
            policy=RetryPolicy(s.max_attempts, s.backoff_initial, s.backoff_max,
                               s.retry_after_cap),
            limiter=connector.limiter,
            breaker=connector.breaker,
            max_concurrency=connector.effective_max_concurrency,
            allowed_hosts=connector.allowed_hosts(),
            allow_http=s.allow_http,
            max_response_bytes=s.max_response_bytes,
            attempt_deadline=s.timeout + s.connect_timeout,
            sleep=sleep,
            now=now or (lambda: datetime.now(UTC)),
            headers=headers,
            refusal=refusal,
        )
    finally:
        if owned:
            await http_client.aclose()


async def _one(
    connector: Connector,
    channel: AgencyChannel,
    subject_reference: str,
    operation: Literal["search", "submit", "poll"],
    call: Callable[[AgencyHTTP], Awaitable[Result]],
    query: Query | None,
    agency_reference: str | None = None,
) -> CheckOutcome:
    http = AgencyHTTP(channel)
    started = time.perf_counter()
    checked_at = datetime.now(UTC)
    try:
        result = await call(http)
        if not isinstance(result, Result):
            raise TypeError("connector returned something other than a Result")
    except ConnectorError as exc:
        result = Result.from_error(exc)
    except _PARSE_ERRORS as exc:
        # never str(exc): parsers quote the input, and the input may be personal data
        result = Result.error(
            "permanent", "malformed_response",
            f"{connector.name}: response did not match the wire API ({type(exc).__name__})",
        )
    except NotImplementedError:
        result = Result.error("permanent", "not_supported",
                              f"{connector.name}: {operation} is not supported")
    except Exception as exc:  # noqa: BLE001 - one subject's failure must not sink the batch
        result = Result.error(
            "permanent", "connector_failure",
            f"{connector.name}: connector failed ({type(exc).__name__})",
        )
    if agency_reference and result.agency_reference is None:
        result = result.model_copy(update={"agency_reference": agency_reference})
    disclosed = tuple(sorted(query.accessed)) if (query is not None and http.calls) else ()
    outcome = CheckOutcome(
        subject_reference=subject_reference,
        connector=connector.name,
        connector_version=connector.version,
        operation=operation,
        disclosed_fields=disclosed,
        result=result,
        http_calls=http.calls,
        checked_at=checked_at,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    if result.error_kind:
        log.warning("check connector=%s ref=%s op=%s error=%s/%s status=%s calls=%d",
                    connector.name, subject_reference, operation, result.error_kind,
                    result.error_code, result.status_code, http.calls)
    else:
        log.debug("check connector=%s ref=%s op=%s outcome=%s calls=%d", connector.name,
                  subject_reference, operation, result.outcome.value, http.calls)
    return outcome


class RunOptions(TypedDict, total=False):
    """How a batch runs; the same for :func:`run_connector`, :func:`run_deferred_submit`
    and :func:`run_deferred_poll`. Every key may be left out.

    ``client``: an ``AsyncClient`` to reuse (not closed here). ``transport``: have a
    right-sized client made over it (e.g. the sandbox's ASGI transport). ``sleep``: the
    back-off sleep (default ``asyncio.sleep``). ``now``: the clock the resilience layer reads
    ``Retry-After`` dates against. ``on_result``: called (sync or async) as each check
    finishes.
    """

    client: httpx.AsyncClient | None
    transport: httpx.AsyncBaseTransport | None
    sleep: Sleep
    now: Callable[[], datetime] | None
    on_result: OnResult | None


Job = Callable[[AgencyChannel], Awaitable[CheckOutcome]]


async def _run_all(connector: Connector, jobs: Sequence[Job], options: RunOptions
                   ) -> list[CheckOutcome]:
    on_result = options.get("on_result")
    async with _channel(connector, options.get("client"), options.get("transport"),
                        options.get("sleep", asyncio.sleep), options.get("now")) as channel:
        gate = asyncio.Semaphore(connector.effective_max_concurrency)

        async def guarded(job: Job) -> CheckOutcome:
            async with gate:
                outcome = await job(channel)
            if on_result is not None:
                maybe = on_result(outcome)
                if inspect.isawaitable(maybe):
                    await maybe
            return outcome

        return list(await asyncio.gather(*(guarded(job) for job in jobs)))


def _require(connector: Connector, deferred: bool) -> None:
    if connector.deferred != deferred:
        use = "run_deferred_submit/run_deferred_poll" if connector.deferred else "run_connector"
        raise TypeError(f"connector {connector.name} needs {use}")


async def _run_queries(
    connector: Connector,
    subjects: Iterable[TraceSubject],
    operation: Literal["search", "submit"],
    options: RunOptions,
) -> list[CheckOutcome]:
    """One minimised query per subject, sent through ``connector.search`` or ``.submit``."""
    send = connector.search if operation == "search" else connector.submit

    def job(subject: TraceSubject) -> Job:
        async def run(channel: AgencyChannel) -> CheckOutcome:
            query = build_query(subject, connector)
            return await _one(connector, channel, subject.reference, operation,
                              lambda http: send(query, http), query)
        return run

    return await _run_all(connector, [job(s) for s in subjects], options)


async def run_connector(connector: Connector, subjects: Iterable[TraceSubject],
                        **options: Unpack[RunOptions]) -> list[CheckOutcome]:
    """Search ``connector`` for every subject; one :class:`CheckOutcome` each, in order.

    Never raises for one subject's failure (see :class:`RunOptions` for the options).
    """
    _require(connector, deferred=False)
    return await _run_queries(connector, subjects, "search", options)


async def run_deferred_submit(connector: Connector, subjects: Iterable[TraceSubject],
                              **options: Unpack[RunOptions]) -> list[CheckOutcome]:
    """File a formal request for each subject with no open enquiry (expect ``pending``)."""
    _require(connector, deferred=True)
    return await _run_queries(connector, subjects, "submit", options)


async def run_deferred_poll(connector: Connector, enquiries: Iterable[Enquiry | tuple[str, str]],
                            **options: Unpack[RunOptions]) -> list[CheckOutcome]:
    """Ask about open enquiries ``(subject_reference, agency_reference)``.

    Only the agency reference is sent, so ``disclosed_fields`` is empty. The result is the
    answer (found / not_found), still ``pending``, or an error; it carries the reference.
    """
    _require(connector, deferred=True)

    def job(enq: Enquiry) -> Job:
        async def run(channel: AgencyChannel) -> CheckOutcome:
            return await _one(connector, channel, enq.subject_reference, "poll",
                              lambda http: connector.poll(enq.agency_reference, http), None,
                              agency_reference=enq.agency_reference)
        return run

    return await _run_all(connector, [job(Enquiry(*e)) for e in enquiries], options)


async def check_health(
    connector: Connector,
    *,
    client: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Sleep = asyncio.sleep,
) -> HealthReport:
    """Run the connector's ``health`` probe; never raises."""
    async with _channel(connector, client, transport, sleep, None) as channel:
        http = AgencyHTTP(channel)
        if channel.refusal is not None:  # even a probe that sends nothing must say so
            message, code = channel.refusal
            return HealthReport(connector.name, False, f"permanent/{code}: {message}", 0)
        try:
            detail = await connector.health(http)
            return HealthReport(connector.name, True, detail, http.calls)
        except ConnectorError as exc:
            return HealthReport(connector.name, False, f"{exc.kind}/{exc.code}: {exc.message}",
                                http.calls)
        except Exception as exc:  # noqa: BLE001
            return HealthReport(connector.name, False, f"probe failed ({type(exc).__name__})",
                                http.calls)


