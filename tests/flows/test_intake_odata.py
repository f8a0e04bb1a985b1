"""Intake from the Mendix OData feed (simulated by the sandbox): paging, watermark, updates,
authentication and malformed pages."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import httpx
import pytest

from flows.settings import Settings
from tasks.intake import ingest_records
from tasks.odata import MendixFeedError, fetch_mendix_changes, save_watermark
from tests.la_configs import intake_config


@pytest.fixture
def mendix(clean_db: str):  # type: ignore[no-untyped-def]
    from sandbox import Sandbox, asgi_transport, generate_world

    world, _ = generate_world(30, 4, today=date(2026, 11, 23))
    world = world.model_copy(update={"mendix": world.mendix.model_copy(
        update={"max_page_size": 7})})
    sb = Sandbox(world)
    settings = Settings(database_url=clean_db, mendix_base_url="http://sandbox/mendix/odata",
                        mendix_username=world.mendix.username,
                        mendix_password=world.mendix.password)  # type: ignore[arg-type]
    return sb, settings, asgi_transport(sb)


def _pull(settings: Settings, transport: httpx.AsyncBaseTransport):  # type: ignore[no-untyped-def]
    records, newest = asyncio.run(fetch_mendix_changes(settings, transport=transport))
    cfg = intake_config(db_url=settings.database_url)
    report = ingest_records(records, source="mendix", cfg=cfg)
    if newest is not None:
        save_watermark(settings.database_url, newest)
    return records, report


def test_pages_through_the_feed_then_only_reads_changes(mendix) -> None:  # type: ignore[no-untyped-def]
    sb, settings, transport = mendix
    records, report = _pull(settings, transport)
    assert len(records) == len(sb.world.referrals) > 7  # more than one page
    assert report.accounted == report.received == len(records)
    assert report.created > 0

    again, report2 = _pull(settings, transport)
    assert again == [] and report2.received == 0

    changed = dict(sb.world.referrals[0])
    changed["reason"] = "School has new information"
    changed["changed_at"] = "2027-01-05T09:00:00Z"
    sb.upsert_referral(changed)
    third, report3 = _pull(settings, transport)
    assert len(third) == 1
    assert report3.updated + report3.quarantined + report3.not_cme + report3.unchanged == 1
    assert "ID" not in json.loads(third[0][1])


def test_wrong_password_is_a_clear_error(mendix) -> None:  # type: ignore[no-untyped-def]
    _, settings, transport = mendix
    bad = settings.model_copy(update={"mendix_password": None})
    with pytest.raises(MendixFeedError, match="HTTP 401.*CME_MENDIX_USERNAME"):
        asyncio.run(fetch_mendix_changes(bad, transport=transport))


@pytest.mark.parametrize("body", [b"not json", b'{"no_value": []}', b'[1,2]'])
def test_a_page_that_is_not_odata_is_refused_and_nothing_is_lost(clean_db: str,
                                                                 body: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    settings = Settings(database_url=clean_db, mendix_base_url="http://mendix.test/odata")
    with pytest.raises(MendixFeedError):
        asyncio.run(fetch_mendix_changes(settings, transport=transport))


def test_server_errors_are_retried_then_reported(clean_db: str) -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(503)

    settings = Settings(database_url=clean_db, mendix_base_url="http://mendix.test/odata")
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    with pytest.raises(MendixFeedError, match="HTTP 503"):
        asyncio.run(fetch_mendix_changes(settings, transport=httpx.MockTransport(handler),
                                         sleep=no_sleep))
    assert len(slept) == 3
    assert calls["n"] == 4
