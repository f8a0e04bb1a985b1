"""Read new and changed referrals from the referral form's Mendix OData v4 service.

Paging follows ``@odata.nextLink`` (``$top``/``$skip``), filtered on a ``ChangedDate``
watermark kept in the ``sourcestate`` table. The watermark moves only after the records are
stored, so a crash re-reads a page (harmless: a known Mendix reference is an update).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from cme.errors import CmeError
from cme.settings import Settings
from models import SourceState, session_scope

__all__ = ["MendixFeedError", "fetch_mendix_changes", "save_watermark", "SOURCE"]

SOURCE = "mendix"
MAX_PAGES = 10_000
_ODATA_KEYS = {"ID", "ChangedDate"}


class MendixFeedError(CmeError):
    """The OData service could not be read, or answered with something that is not OData."""


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


async def fetch_mendix_changes(settings: Settings, *,
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
        pw = settings.mendix_password.get_secret_value() if settings.mendix_password else ""
        auth = httpx.BasicAuth(settings.mendix_username, pw)
    url: str | None = settings.mendix_base_url.rstrip("/") + "/Referrals"
    records: list[tuple[int | None, str]] = []
    newest: datetime | None = since
    async with httpx.AsyncClient(auth=auth, transport=transport, timeout=30.0) as client:
        pages = 0
        while url is not None:
            pages += 1
            if pages > MAX_PAGES:
                raise MendixFeedError("the OData feed kept paging past the limit")
            page = await _get_page(client, url, params if pages == 1 else None, sleep)
            for item in page["value"]:
                if isinstance(item, dict):
                    changed = item.get("ChangedDate")
                    record = {k: v for k, v in item.items()
                              if k not in _ODATA_KEYS and not k.startswith("@")}
                    if isinstance(changed, str):
                        try:
                            when = datetime.fromisoformat(changed.replace("Z", "+00:00"))
                            if when.tzinfo is None:
                                when = when.replace(tzinfo=UTC)
                            newest = when if newest is None or when > newest else newest
                        except ValueError:
                            pass
                    records.append((None, json.dumps(record)))
                else:
                    records.append((None, json.dumps(item)))
            nxt = page.get("@odata.nextLink")
            url = nxt if isinstance(nxt, str) and nxt else None
    return records, newest


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
    try:
        body = resp.json()
    except ValueError:
        raise MendixFeedError("the Mendix OData service sent a page that is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("value"), list):
        raise MendixFeedError("the Mendix OData service sent a page without a 'value' list")
    return body
