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
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from connectors import SecretBlockError, reveal
from models import SourceState, session_scope
from tasks.errors import PipelineError

__all__ = ["MendixFeed", "MendixFeedError", "fetch_mendix_changes", "save_watermark", "SOURCE"]

SOURCE = "mendix"
MAX_PAGES = 10_000
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


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in (408, 429) or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


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
                               ) -> tuple[list[tuple[int | None, str]], datetime | None]:
    """Every referral changed since the watermark, as raw JSON records, plus the newest
    ``ChangedDate`` seen (save it with :func:`save_watermark` once the records are stored)."""
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
    url: str | None = first
    started = datetime.now(UTC)
    records: list[tuple[int | None, str]] = []
    newest: datetime | None = since
    read: set[str] = set()
    async with httpx.AsyncClient(auth=auth, transport=transport, timeout=30.0) as client:
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise MendixFeedError("the OData feed kept paging past the limit")
            read.add(url)
            page = await _get_page(client, url, params if pages == 1 else None, sleep)
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


async def _get_page(client: httpx.AsyncClient, url: str, params: dict[str, str] | None,
                    sleep: Callable[[float], Awaitable[None]]) -> dict[str, Any]:
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_transient), stop=stop_after_attempt(4),
            wait=wait_exponential_jitter(multiplier=0.5, max=8), reraise=True, sleep=sleep,
        ):
            with attempt:
                resp = await client.get(url, params=params)
                resp.raise_for_status()
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        hint = " (check CME_MENDIX_USERNAME/PASSWORD)" if code in (401, 403) else ""
        raise MendixFeedError(f"the Mendix OData service answered HTTP {code}{hint}") from None
    except httpx.TransportError as exc:
        raise MendixFeedError(
            f"cannot reach the Mendix OData service ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:  # e.g. a body that cannot be decoded
        raise MendixFeedError(
            f"cannot read the Mendix OData service ({type(exc).__name__})") from None
    try:
        body = resp.json()
    except (ValueError, RecursionError):
        raise MendixFeedError("the Mendix OData service sent a page that is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise MendixFeedError("the Mendix OData service sent a page without a 'value' list")
    return body
