"""Read new and changed referrals from the referral form's Mendix OData v4 service.

Paging follows ``@odata.nextLink`` (``$top``/``$skip``), filtered on a ``ChangedDate``
watermark kept in the ``sourcestate`` table. The watermark moves only after the records are
stored, so a crash re-reads a page (harmless: a known Mendix reference is an update).

A feed that misbehaves ends in :class:`MendixFeedError`, never another exception: a page
that is not OData (or nests deeper than the JSON parser allows), a ``nextLink`` that is not
a URL, points at another server (the credentials go only to ``CME_MENDIX_BASE_URL``'s
server) or repeats a page already read. A relative ``nextLink`` is read against the page
that carried it. A ``ChangedDate`` later than the start of the read does not move the
watermark past that moment, so one bad date cannot hide every later change.

Every page is read through the agencies' HTTP layer (``connectors.AgencyHTTP``: README,
"Connector authors"), not a loop of its own: 429 honours ``Retry-After`` (a wait over the cap
is not waited for), 408/5xx, timeouts and dropped connections are retried with back-off, a
page over :data:`MAX_PAGE_BYTES` is refused while it streams, and a circuit breaker stops
calling a service that keeps failing (the intake flow keeps one breaker per process, so a dead
feed is not hammered every quarter of an hour).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from connectors import (
    AgencyChannel,
    AgencyHTTP,
    AgencyResponse,
    AgencyUnavailable,
    CircuitBreaker,
    CircuitOpen,
    ConnectionFailed,
    ConnectorError,
    RateLimited,
    RateLimiter,
    ResponseTooLarge,
    RetryPolicy,
    SecretBlockError,
    reveal,
)
from models import SourceState, session_scope
from tasks.errors import PipelineError

__all__ = [
    "MAX_PAGE_BYTES",
    "SOURCE",
    "MendixFeed",
    "MendixFeedError",
    "feed_breaker",
    "fetch_mendix_changes",
    "save_watermark",
]

SOURCE = "mendix"
MAX_PAGES = 10_000
#: The largest page read: 500 records of up to intake's record cap and then some (a page
#: with one 3 MB record must still arrive, so intake can quarantine that record by name).
MAX_PAGE_BYTES = 200 * 1024 * 1024
#: Retries as before this used the agencies' layer: 4 attempts, 0.5 s doubling to 8 s.
RETRY = RetryPolicy(max_attempts=4, backoff_initial=0.5, backoff_max=8.0,
                    retry_after_cap=60.0)
_ODATA_KEYS = {"ID", "ChangedDate"}


class MendixFeedError(PipelineError):
    """The OData service could not be read, or answered with something that is not OData."""


class MendixFeed(Protocol):
    """Where the feed is and how to sign in: the settings (``flows.settings.Settings``) have
    these fields; a task never reads settings itself (docs/architecture.md)."""

    @property
    def database_url(self) -> str: ...
    @property
    def mendix_base_url(self) -> str | None: ...
    @property
    def mendix_username(self) -> str | None: ...
    @property
    def mendix_password(self) -> SecretStr | None: ...


def feed_breaker() -> CircuitBreaker:
    """A breaker for the feed: opens after 5 failed calls in a row, tries again after 5 min."""
    return CircuitBreaker(threshold=5, cooldown=300.0)


def _watermark(db_url: str) -> datetime | None:
    with session_scope(db_url) as s:
        row = s.get(SourceState, SOURCE)
        return row.watermark if row else None


def save_watermark(db_url: str, when: datetime) -> None:
    with session_scope(db_url) as s:
        row = s.get(SourceState, SOURCE)
        if row is None:
            s.add(SourceState(name=SOURCE, watermark=when))
        elif row.watermark is None or when > row.watermark:
            row.watermark = when
            row.updated_at = datetime.now(UTC)


async def fetch_mendix_changes(settings: MendixFeed, *,
                               transport: httpx.AsyncBaseTransport | None = None,
                               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                               breaker: CircuitBreaker | None = None,
                               max_page_bytes: int = MAX_PAGE_BYTES,
                               ) -> tuple[list[tuple[int | None, str]], datetime | None]:
    """Every referral changed since the watermark, as raw JSON records, plus the newest
    ``ChangedDate`` seen (save it with :func:`save_watermark` once the records are stored).

    ``breaker``: the feed's circuit breaker, kept by the caller across reads (default: a new
    one for this read). Raises :class:`MendixFeedError` for anything that goes wrong."""
    if not settings.mendix_base_url:
        raise MendixFeedError("CME_MENDIX_BASE_URL is not set")
    since = _watermark(settings.database_url)
    params: dict[str, str] = {"$orderby": "ChangedDate asc", "$top": "500"}
    if since is not None:
        params["$filter"] = f"ChangedDate gt {since.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    auth = None
    if settings.mendix_username:
        try:  # the password may name a Prefect Secret block (connectors/secrets.py)
            pw = reveal(settings.mendix_password, setting="CME_MENDIX_PASSWORD") or ""
        except SecretBlockError as exc:
            raise MendixFeedError(str(exc)) from None
        auth = httpx.BasicAuth(settings.mendix_username, pw)
    first = settings.mendix_base_url.rstrip("/") + "/Referrals"
    try:
        origin = _origin(httpx.URL(first))
    except httpx.InvalidURL:
        raise MendixFeedError("CME_MENDIX_BASE_URL is not a valid URL") from None
    if origin[0] not in ("http", "https") or not origin[1]:
        raise MendixFeedError("CME_MENDIX_BASE_URL is not an http(s) URL")
    url: str | None = first
    started = datetime.now(UTC)
    records: list[tuple[int | None, str]] = []
    newest: datetime | None = since
    read: set[str] = set()
    async with httpx.AsyncClient(auth=auth, transport=transport, timeout=30.0) as client:
        http = AgencyHTTP(AgencyChannel(
            name=SOURCE, client=client, policy=RETRY, limiter=RateLimiter(None),
            breaker=breaker if breaker is not None else feed_breaker(), max_concurrency=1,
            # Only the configured server: a nextLink elsewhere is refused before this.
            allowed_hosts=frozenset({origin[1]}), allow_http=origin[0] == "http",
            max_response_bytes=max_page_bytes, attempt_deadline=120.0, sleep=sleep))
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise MendixFeedError("the OData feed kept paging past the limit")
            read.add(url)
            page = await _get_page(http, url, params if pages == 1 else None, max_page_bytes)
            for item in page["value"]:
                if isinstance(item, dict):
                    changed = item.get("ChangedDate")
                    record = {k: v for k, v in item.items()
                              if k not in _ODATA_KEYS and not k.startswith("@")}
                    when = _changed_date(changed)
                    if when is not None and (newest is None or when > newest):
                        newest = when
                    records.append((None, json.dumps(record)))
                else:
                    records.append((None, json.dumps(item)))
            url = _next_url(url, page.get("@odata.nextLink"), origin, read)
    if newest is not None and newest > started:
        newest = started
    return records, newest


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _changed_date(value: object) -> datetime | None:
    """An item's ``ChangedDate`` in UTC, or None if it is not a usable date-time."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _next_url(current: str, link: object, origin: tuple[str, str, int | None],
              read: set[str]) -> str | None:
    """The next page to read, or None at the end of the feed."""
    if not isinstance(link, str) or not link:
        return None
    try:
        nxt = httpx.URL(current).join(link).copy_with(fragment=None)
    except httpx.InvalidURL:
        raise MendixFeedError(
            "the Mendix OData service sent an @odata.nextLink that is not a URL") from None
    if _origin(nxt) != origin:
        raise MendixFeedError("the Mendix OData service sent an @odata.nextLink to another "
                              "server; not following it (CME_MENDIX_BASE_URL)")
    if str(nxt) in read:
        raise MendixFeedError(
            "the Mendix OData service sent an @odata.nextLink to a page already read")
    return str(nxt)


async def _get_page(http: AgencyHTTP, url: str, params: dict[str, str] | None,
                    cap: int) -> dict[str, Any]:
    try:
        resp = await http.get(url, params=params)
    except ConnectorError as exc:
        raise MendixFeedError(_feed_failure(exc, cap)) from None
    code = resp.status_code
    if not 200 <= code < 300:
        hint = " (check CME_MENDIX_USERNAME/PASSWORD)" if code in (401, 403) else ""
        raise MendixFeedError(f"the Mendix OData service answered HTTP {code}{hint}")
    return _odata_page(resp)


def _feed_failure(exc: ConnectorError, cap: int) -> str:
    """The one line for a page the HTTP layer gave up on (no URL, no body: README)."""
    if isinstance(exc, RateLimited):
        if not exc.retryable:
            return ("the Mendix OData service asked to wait longer than "
                    f"{RETRY.retry_after_cap:.0f} s (HTTP 429, Retry-After)")
        return "the Mendix OData service answered HTTP 429"
    if isinstance(exc, AgencyUnavailable) and exc.status_code is not None:
        return f"the Mendix OData service answered HTTP {exc.status_code}"
    if isinstance(exc, CircuitOpen):
        return ("the Mendix OData service kept failing; not calling it for a while "
                "(circuit open)")
    if isinstance(exc, ResponseTooLarge):
        return f"the Mendix OData service sent a page over {cap} bytes; not read"
    cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else type(exc).__name__
    if isinstance(exc, ConnectionFailed) or exc.kind == "transient":
        return f"cannot reach the Mendix OData service ({cause})"
    return f"cannot read the Mendix OData service ({cause})"


def _odata_page(resp: AgencyResponse) -> dict[str, Any]:
    try:
        body = json.loads(resp.content)
    except (ValueError, RecursionError):
        raise MendixFeedError("the Mendix OData service sent a page that is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise MendixFeedError("the Mendix OData service sent a page without a 'value' list")
    return body
