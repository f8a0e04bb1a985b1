"""Hostile Mendix OData feeds (issue 8, point 3): generated pages through the real reader.

Hypothesis generates a feed of 1-5 pages, served by ``httpx.MockTransport``: referral
entities (valid, near-valid, junk values) with good, odd, future or unusable
``ChangedDate``\\ s, and pages that go wrong — not JSON, not an object, no ``value`` list,
nested 100,000 deep, HTTP errors (some only once), and ``@odata.nextLink``\\ s that are
relative, absolute, missing, not strings, not URLs, loop back, or point at another server.
For each feed, starting from a random earlier watermark:

- :func:`tasks.odata.fetch_mendix_changes` returns every entity of every page, in order,
  as the raw record intake will see (OData keys removed) — or raises
  :class:`~tasks.odata.MendixFeedError` with a message that names no secret and no record;
  never any other exception, and only when the feed really misbehaved;
- no request goes to any server but the feed's (the basic-auth credentials stay home), and
  paging stops (a loop is refused, not followed);
- the records go through intake with count in = accepted + quarantined (+ updates etc.);
- the watermark: unchanged after an error; after success, the newest usable
  ``ChangedDate`` of the records read — but never later than the moment the read began
  (one far-future date must not hide every later change) and never earlier than before.

``test_hostile_odata_fuzz_ci`` runs on every run; ``test_hostile_odata_fuzz_deep`` only with
``-m deep`` or ``CME_DEEP=1``. A huge page and the real ``intake`` flow are tested below.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hostile_kit import (
    Generated,
    Tally,
    check_intake,
    harmful,
    pii_of,
    reset_db,
    skip_unless_deep,
    valid_referral,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from flows.settings import Settings
from models import QuarantinedRecord, Referral, SourceState, session_scope
from tasks.intake import ingest_records
from tasks.odata import MendixFeedError, fetch_mendix_changes, save_watermark
from tests.la_configs import intake_config

BASE = "http://mendix.test/odata"
FIRST = f"{BASE}/Referrals"
USER, PASSWORD = "fuzz-user", "fuzz-secret-pw-7391"
CI_FEEDS = 80
DEEP_FEEDS = 600


def page_url(i: int) -> str:
    return f"{FIRST}?page={i}"


# --- what a page is, and what the reader owes it --------------------------------------------


@dataclass
class Item:
    """One entity on a page and the record intake must see for it."""

    value: Any
    line: Generated
    changed: datetime | None = None  # the instant ChangedDate stands for, if usable


@dataclass
class Page:
    items: list[Item] = field(default_factory=list)
    #: what the page's body is: "ok" or a way of not being OData
    body: str = "ok"
    #: HTTP status of every answer (``flaky``: 503 once, then the page)
    status: int | str = 200
    link: Any = None  # the @odata.nextLink value (absent when ``link_absent``)
    link_absent: bool = True
    #: does following ``link`` legitimately lead to the next planned page?
    link_good: bool = False

    @property
    def fails(self) -> bool:
        return self.body != "ok" or (isinstance(self.status, int) and self.status != 200)

    def render(self, index: int) -> bytes:
        bodies = {
            "html": b"<html><body>Service Unavailable</body></html>",
            "empty": b"",
            "bad_utf8": b'{"value": ["\xff\xfe"]}',
            "truncated": b'{"value": [{"mendix_reference": "CME-FZ-0',
            "array": b"[1, 2, 3]",
            "null": b"null",
            "no_value": b'{"values": []}',
            "value_object": b'{"value": {"mendix_reference": "CME-FZ-000001"}}',
            "value_string": b'{"value": "CME-FZ-000001"}',
            "value_null": b'{"value": null}',
            "deep_array": b"[" * 100_000 + b"]" * 100_000,
            "deep_value": b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        }
        if self.body in bodies:
            return bodies[self.body]
        page: dict[str, Any] = {"@odata.context": f"{BASE}/$metadata#Referrals",
                                "value": [i.value for i in self.items]}
        if not self.link_absent:
            page["@odata.nextLink"] = self.link
        return json.dumps(page).encode()


_OFFSETS = (UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)),
            timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)))


@st.composite
def changed_date(draw: st.DrawFn) -> tuple[Any, datetime | None, bool]:
    """(ChangedDate value, the instant it stands for or None, present at all?)."""
    kind = draw(st.sampled_from(["z", "offset", "naive", "future", "overflow", "garbage",
                                 "not_str", "absent"]))
    if kind in ("z", "offset", "naive"):
        instant = draw(st.datetimes(datetime(2025, 1, 1), datetime(2026, 11, 27),
                                    timezones=st.just(UTC)))
        if kind == "z":
            return instant.isoformat().replace("+00:00", "Z"), instant, True
        if kind == "offset":
            return instant.astimezone(draw(st.sampled_from(_OFFSETS))).isoformat(), instant, True
        return instant.replace(tzinfo=None).isoformat(), instant, True
    if kind == "future":
        when = draw(st.sampled_from([datetime(2999, 1, 1, tzinfo=UTC),
                                     datetime(9999, 12, 31, 23, tzinfo=UTC),
                                     datetime.now(UTC) + timedelta(days=3)]))
        return when.isoformat(), when, True
    if kind == "overflow":  # valid ISO text whose UTC instant does not exist
        return draw(st.sampled_from(["9999-12-31T23:59:59-12:00",
                                     "0001-01-01T00:00:00+14:00"])), None, True
    if kind == "garbage":
        return draw(st.sampled_from(["yesterday", "", "2026-13-01T00:00:00Z",
                                     "2026-11-27 25:00"])), None, True
    if kind == "not_str":
        return draw(st.sampled_from([1764324000, None, [], {"when": "now"}, True])), None, True
    return None, None, False


@st.composite
def entity(draw: st.DrawFn) -> Item:
    """A referral entity as Mendix might send it, or a value that is no entity at all."""
    roll = draw(st.integers(0, 9))
    if roll >= 8:
        value = draw(st.sampled_from([1, -2.5, "CME-FZ-000001", None, True, [],
                                      ["CME-FZ-000001"], [[[[[]]]]], {}]))
        if value == {}:
            record = value
            expect, field_ = "reject", "mendix_reference"
        else:
            record = None
            expect, field_ = "reject", "(record)"
        raw = json.dumps(record if record is not None else value)
        return Item(value, Generated(raw, expect, "odata:junk", field_))
    base = draw(valid_referral())
    if roll <= 3:
        record, expect, field_, label = base, "accept", None, "odata:valid"
    else:
        record, expect, field_, label = draw(harmful(base))
        label = f"odata:{label}"
    cd, instant, present = draw(changed_date())
    value = {"ID": record.get("mendix_reference", "?"), **record}
    if present:
        value["ChangedDate"] = cd
    if draw(st.booleans()):
        value["@odata.etag"] = 'W/"1"'
    raw = json.dumps(record)
    return Item(value, Generated(raw, expect, label, field_, pii_of(base)), instant)


GOOD_LINKS = ("absolute", "relative", "dot_relative", "upper_host", "default_port",
              "fragment")
BAD_LINKS = {
    "offsite": "http://evil.example/odata/Referrals?page={n}",
    "scheme_relative": "//evil.example/odata/Referrals?page={n}",
    "other_scheme": "https://mendix.test/odata/Referrals?page={n}",
    "other_port": "http://mendix.test:8080/odata/Referrals?page={n}",
    "huge_port": "http://mendix.test:99999999/odata/Referrals?page={n}",
    "not_a_url": "http://[::1",
    "nul": "\x00",
    "javascript": "javascript:alert(1)",
    "file": "file:///etc/passwd",
    "unknown_page": "Referrals?page=nowhere",
    "blank": " ",
}
END_LINKS = ("absent", "null", "empty", "number", "list", "object")
BAD_BODIES = ("html", "empty", "bad_utf8", "truncated", "array", "null", "no_value",
              "value_object", "value_string", "value_null", "deep_array", "deep_value")


def good_link(kind: str, n: int) -> str:
    return {
        "absolute": page_url(n),
        "relative": f"Referrals?page={n}",
        "dot_relative": f"./Referrals?page={n}",
        "upper_host": f"http://MENDIX.TEST/odata/Referrals?page={n}",
        "default_port": f"http://mendix.test:80/odata/Referrals?page={n}",
        "fragment": f"Referrals?page={n}#more",
    }[kind]


@st.composite
def feed(draw: st.DrawFn) -> list[Page]:
    n = draw(st.integers(1, 5))
    pages = [Page(items=draw(st.lists(entity(), max_size=12))) for _ in range(n)]
    for i, page in enumerate(pages):
        last = i == n - 1
        # Mostly fine pages: hypothesis favours the ends of a range, so the rare events sit
        # in the middle of one.
        roll = draw(st.integers(0, 29))
        if roll in (10, 11):
            page.body = draw(st.sampled_from(BAD_BODIES))
        elif roll == 12:
            page.status = draw(st.sampled_from([400, 401, 403, 404, 410, 500, 503, 429, 301]))
        elif roll in (13, 14):
            page.status = "flaky"
        if last:
            end = draw(st.sampled_from(END_LINKS))
            page.link_absent = end == "absent"
            page.link = {"absent": None, "null": None, "empty": "", "number": 2,
                         "list": [page_url(1)], "object": {"href": page_url(1)}}[end]
            if draw(st.integers(0, 14)) == 7:  # a loop back instead of the end
                page.link_absent = False
                back = draw(st.integers(0, i))
                page.link = FIRST if back == 0 else page_url(back)
            continue
        page.link_absent = False
        if draw(st.integers(0, 14)) in (6, 7):
            page.link = BAD_LINKS[draw(st.sampled_from(sorted(BAD_LINKS)))].format(n=i + 1)
        else:
            page.link = good_link(draw(st.sampled_from(GOOD_LINKS)), i + 1)
            page.link_good = True
    return pages


def expected_walk(pages: list[Page]) -> tuple[list[Page], bool]:
    """(pages whose entities reach intake, did the feed end in an error?)."""
    read: list[Page] = []
    for page in pages:
        if page.fails:
            return read, True
        read.append(page)
        if page.link_absent or not isinstance(page.link, str) or page.link == "":
            return read, False
        if not page.link_good:
            return read, True  # not a URL, another server, a loop, an unknown page
    return read, False  # pragma: no cover - the last page never links on


# --- the transport --------------------------------------------------------------------------


@dataclass
class FeedServer:
    pages: list[Page]
    requests: list[httpx.Request] = field(default_factory=list)
    flaked: set[int] = field(default_factory=set)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = request.url
        if url.host != "mendix.test" or url.path != "/odata/Referrals":
            return httpx.Response(404)
        page_param = url.params.get("page")
        if page_param is None:
            index = 0
        elif page_param.isdigit() and 1 <= int(page_param) < len(self.pages):
            index = int(page_param)
        else:
            return httpx.Response(404)
        page = self.pages[index]
        if page.status == "flaky" and index not in self.flaked:
            self.flaked.add(index)
            return httpx.Response(503)
        status = page.status if isinstance(page.status, int) else 200
        headers = {"location": f"{BASE}/elsewhere"} if status == 301 else {}
        return httpx.Response(status, content=page.render(index), headers=headers)


async def _no_sleep(_seconds: float) -> None:
    return None


def _watermark(db_url: str) -> datetime | None:
    with session_scope(db_url) as s:
        row = s.get(SourceState, "mendix")
        return row.watermark if row else None


def _settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, mendix_base_url=BASE, mendix_username=USER,
                    mendix_password=PASSWORD)  # type: ignore[arg-type]


def check_feed(db_url: str, pages: list[Page], initial: datetime | None,
               tally: Tally) -> None:
    """Read ``pages`` from an empty database whose watermark is ``initial``; assert."""
    reset_db(db_url)
    if initial is not None:
        save_watermark(db_url, initial)
    server = FeedServer(pages)
    read, must_fail = expected_walk(pages)
    before = datetime.now(UTC)
    try:
        records, newest = asyncio.run(fetch_mendix_changes(
            _settings(db_url), transport=httpx.MockTransport(server), sleep=_no_sleep))
    except MendixFeedError as exc:
        assert must_fail, f"the feed was fine but was refused: {exc}"
        message = str(exc)
        assert "Mendix" in message or "OData" in message, message
        assert PASSWORD not in message and "CME-FZ" not in message, message
        assert _watermark(db_url) == initial
        tally.outcomes["feed_refused"] += 1
        records, newest = None, None
    after = datetime.now(UTC)
    # Only the feed's own server was asked, each page a bounded number of times.
    assert all(r.url.host == "mendix.test" for r in server.requests), \
        [str(r.url) for r in server.requests]
    assert len(server.requests) <= 4 * len(pages) + 1
    if records is None:
        return
    assert not must_fail, "a broken feed was read as if it were fine"
    items = [item for page in read for item in page.items]
    assert [raw for _, raw in records] == [item.line.raw for item in items]
    # The watermark: the newest usable ChangedDate read, capped at the start of the read.
    seen = [i.changed for i in items if i.changed is not None]
    target = max([*seen, *([initial] if initial else [])], default=None)
    if target is None:
        assert newest is None
    elif target <= before:
        assert newest == target, (newest, target)
    else:
        assert newest is not None and before <= newest <= after, (newest, target)
    # The flow passes no line numbers; numbering them here only labels the quarantine rows.
    numbered = [(n, raw) for n, (_, raw) in enumerate(records, start=1)]
    report = ingest_records(numbered, source="mendix", cfg=intake_config(db_url=db_url))
    check_intake(db_url, [i.line for i in items], report, tally)
    if newest is not None:
        save_watermark(db_url, newest)
    stored = _watermark(db_url)
    assert stored is None or stored <= after
    if initial is not None:
        assert stored is not None and stored >= initial
    tally.outcomes["feed_read"] += 1


def _fuzz(db_url: str, examples: int) -> Tally:
    tally = Tally()

    @settings(max_examples=examples, deadline=None, print_blob=True,
              phases=[Phase.explicit, Phase.reuse, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(pages=feed(), initial=st.none() | st.datetimes(
        datetime(2024, 1, 1), datetime(2026, 6, 1), timezones=st.just(UTC)))
    def one_feed(pages: list[Page], initial: datetime | None) -> None:
        check_feed(db_url, pages, initial, tally)

    one_feed()
    return tally


def test_hostile_odata_fuzz_ci(clean_db: str) -> None:
    tally = _fuzz(clean_db, CI_FEEDS)
    assert tally.outcomes["feed_read"] > CI_FEEDS // 5, tally.outcomes
    assert tally.outcomes["feed_refused"] > 0, tally.outcomes
    assert tally.records > 0


@pytest.mark.deep
def test_hostile_odata_fuzz_deep(clean_db: str, request: pytest.FixtureRequest) -> None:
    skip_unless_deep(request.config)
    tally = _fuzz(clean_db, DEEP_FEEDS)
    assert tally.outcomes["feed_read"] > DEEP_FEEDS // 5, tally.outcomes


# --- the explicit cases ---------------------------------------------------------------------


@dataclass
class _Fixed(Page):
    """A page whose body is given whole."""

    content: bytes = b""

    def render(self, index: int) -> bytes:
        return self.content


def _serve(*bodies: bytes | dict[str, Any]) -> FeedServer:
    """Page 0 at the feed's URL, page ``n`` at ``?page=n``."""
    return FeedServer([_Fixed(content=b if isinstance(b, bytes) else json.dumps(b).encode())
                       for b in bodies])


def _fetch(db_url: str, server: FeedServer) -> tuple[list[tuple[int | None, str]],
                                                     datetime | None]:
    return asyncio.run(fetch_mendix_changes(_settings(db_url),
                                            transport=httpx.MockTransport(server),
                                            sleep=_no_sleep))


def test_a_huge_page_reaches_intake_whole(clean_db: str) -> None:
    """2,000 entities on one page (and one 3 MB entity): all reach intake, nothing dropped."""
    changed = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    values: list[Any] = [{"ID": n, "ChangedDate": changed.isoformat(), "mendix_reference":
                          f"CME-HUGE-{n:06d}"} for n in range(2_000)]
    values.append({"mendix_reference": "CME-HUGE-BIG", "reason": "w" * 3_000_000})
    server = _serve({"value": values})
    records, newest = _fetch(clean_db, server)
    assert len(records) == 2_001
    assert newest == changed
    report = ingest_records(records, source="mendix", cfg=intake_config(db_url=clean_db))
    assert report.received == report.quarantined == report.accounted == 2_001
    with session_scope(clean_db) as s:
        big = s.exec(select(QuarantinedRecord).where(
            QuarantinedRecord.mendix_reference == "CME-HUGE-BIG")).one()
        assert any("larger than" in r for r in big.reasons)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"value": [' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b"]}",
], ids=["deep-array", "deep-entity"])
def test_a_page_nested_100k_deep_is_refused_not_a_crash(clean_db: str, body: bytes) -> None:
    with pytest.raises(MendixFeedError, match="not JSON"):
        _fetch(clean_db, _serve(body))


def test_a_next_link_to_another_server_is_not_followed(clean_db: str) -> None:
    server = _serve({"value": [], "@odata.nextLink": "https://evil.example/odata/Referrals"})
    with pytest.raises(MendixFeedError, match="another server"):
        _fetch(clean_db, server)
    assert [r.url.host for r in server.requests] == ["mendix.test"]
    assert server.requests[0].headers["authorization"].startswith("Basic ")


def test_a_next_link_that_loops_is_refused(clean_db: str) -> None:
    server = _serve({"value": [], "@odata.nextLink": f"{FIRST}?page=1"},
                    {"value": [], "@odata.nextLink": f"{FIRST}?page=1"})
    with pytest.raises(MendixFeedError, match="already read"):
        _fetch(clean_db, server)
    assert len(server.requests) == 2


def test_one_far_future_changed_date_does_not_hide_later_changes(clean_db: str) -> None:
    server = _serve({"value": [{"ChangedDate": "9999-12-31T23:00:00Z",
                                "mendix_reference": "CME-FUTURE-1"}]})
    before = datetime.now(UTC)
    _, newest = _fetch(clean_db, server)
    assert newest is not None and before <= newest <= datetime.now(UTC)


def test_the_intake_flow_keeps_the_watermark_when_a_later_page_is_broken(
    prefect_harness: None, clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the real ``intake`` flow: page 1 is fine, page 2 is not OData. The flow fails
    with the feed error, stores none of page 1's records half-way, and the watermark stays
    where it was, so the next run reads page 1 again."""
    import flows.intake as intake_flow

    earlier = datetime(2026, 10, 1, tzinfo=UTC)
    save_watermark(clean_db, earlier)
    good = {"mendix_reference": "CME-FLOW-000001", "ChangedDate": "2026-11-20T10:00:00Z"}
    server = _serve({"value": [good], "@odata.nextLink": f"{FIRST}?page=1"},
                    b"<html>proxy error</html>")
    for key in [k for k in os.environ if k.startswith("CME_")]:
        if key != "CME_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CME_DATABASE_URL", clean_db)
    monkeypatch.setenv("CME_MENDIX_BASE_URL", BASE)
    monkeypatch.setenv("CME_NOTIFICATION_CHANNEL", "file")
    monkeypatch.setenv("CME_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setattr(intake_flow, "mendix_transport", lambda: httpx.MockTransport(server))
    with pytest.raises(MendixFeedError, match="not JSON"):
        asyncio.run(intake_flow.intake())
    assert _watermark(clean_db) == earlier
    with session_scope(clean_db) as s:  # page 1's record was not stored half-way
        assert s.exec(select(QuarantinedRecord)).all() == []
        assert s.exec(select(Referral)).all() == []
