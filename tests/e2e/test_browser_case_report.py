"""A hostile case report, as an officer's browser shows it (issue 18, point 9).

A case whose free text tries everything — a newline and ``|`` in the address to forge
"Safeguarding concern: no" and "Status: closed" rows, an unclosed code fence, ``<img src=…>``,
``![](http://…)``, ``javascript:`` links, autolinks — is rendered by ``render_case_report``,
published as a markdown artifact on a real Prefect server (with its UI), and opened on the
UI's artifact page in Debian's Chromium (Playwright). Every request the page makes is
intercepted: none may go to an address off this machine. The facts table must keep its
fifteen rows, with the case's real status and concern; no image, no code block, no
``javascript:`` link, no link to the outside; the hostile text is shown literally.

The escaping is :func:`tasks.case_report.md_text`; ``tests/flows/test_case_report.py`` checks
it against a CommonMark parser, this module against the renderer officers actually use.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sqlmodel import Session

from models import (
    CaseEvent,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    Referral,
    ReferralKind,
    SafeguardingConcern,
    School,
    get_engine,
)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.exists() and os.environ.get("CI"):
    pytest.fail("/usr/bin/chromium is missing in CI (apt-get install -y chromium)",
                pytrace=False)
if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is missing (pip install playwright)")

REFERENCE = "CME-2026-000666"
OUTSIDE = "evil.example"
#: Free text from a referral, an agency and an officer, each trying something else.
FORGED_ROWS = "1 Row\n| Safeguarding concern | no |\n| Status | closed |"
FENCE = "Flat 2 ```\nswallow the rest"
HTML_IMG = f'<img src="http://{OUTSIDE}/img.png"> <script>alert(1)</script>'
MD_IMG_LINK = (f"![pixel](http://{OUTSIDE}/pixel.png) [click](javascript:alert(1)) "
               f"<a href=\"javascript:alert(2)\">here</a>")
AUTOLINKS = f"www.{OUTSIDE} https://{OUTSIDE}/a someone@{OUTSIDE} <http://{OUTSIDE}/b>"
FACTS = 15  # rows of the facts table (tasks/case_report.py), besides its header


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def api(self) -> str:
        return f"{self.url}/api"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``prefect server start`` with its UI, on a free loopback port, in a temp home (the
    session's test harness serves no UI)."""
    home = tmp_path_factory.mktemp("prefect-ui")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(home), "PREFECT_UI_API_URL": f"{url}/api",
        "PREFECT_API_URL": f"{url}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }
    log = home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prefect server did not start: "
                                   + log.read_text(errors="replace")[-2000:])
            time.sleep(0.5)
        yield Server(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                              headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Outside:
    """Requests the page tried to make to an address off this machine (all refused)."""

    urls: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Outside]]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    outside = Outside()

    def guard(route: Any) -> None:
        host = urlparse(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in (
                "127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.urls.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    try:
        yield pg, outside
    finally:
        context.close()


def _hostile_case(db_url: str) -> None:
    with Session(get_engine(db_url)) as s:
        school = School(urn="116000", name="Bad | School <b>x</b>", la_code="850",
                        email="office@school.example.org")
        other = School(urn="125111", name=f"New School [x](http://{OUTSIDE})",
                       la_code="936", email="o@new.example.org")
        child = Child(forename="Zebedee", surname="Quill|feather", dob=date(2015, 2, 28),
                      upn="H801200001001", address_line1=FORGED_ROWS, town=HTML_IMG,
                      postcode="SO23 8UJ", match_key="x")
        s.add_all([school, other, child])
        s.flush()
        r = Referral(mendix_reference=REFERENCE, kind=ReferralKind.CME,
                     school_id=school.id or 0, child_id=child.id or 0,
                     received_at=datetime(2026, 12, 2, 7, 0, tzinfo=UTC),
                     acknowledgement_due=date(2026, 12, 9), status=CaseStatus.ESCALATED,
                     classification_reason=FENCE)
        s.add(r)
        s.flush()
        s.add(Check(referral_id=r.id or 0, connector="other_la", connector_version="1",
                    round=1, outcome=CheckOutcome.FOUND, agency_reference=AUTOLINKS[:80],
                    checked_at=datetime(2026, 12, 2, 1, 30, tzinfo=UTC),
                    evidence={"items": [
                        {"kind": "resident", "la_code": "936", "address": MD_IMG_LINK,
                         "postcode": "GU1 1AA", "match_basis": "demographic",
                         "safeguarding": True}]}))
        s.add(SafeguardingConcern(referral_id=r.id or 0, source="other_la",
                                  raised_at=datetime(2026, 12, 2, 1, 31, tzinfo=UTC)))
        s.add(CaseEvent(referral_id=r.id or 0, kind="note", actor="officer",
                        text="Note: " + FENCE + " " + AUTOLINKS))
        s.commit()


def _publish(server: Server, markdown: str) -> str:
    """The report as the case-report flow publishes it: a markdown artifact with no key."""
    r = httpx.post(f"{server.api}/artifacts/", json={
        "type": "markdown", "data": markdown, "description": f"Case report {REFERENCE}"},
        timeout=30)
    r.raise_for_status()
    return str(r.json()["id"])


def _show(page: Any, server: Server, artifact_id: str) -> Any:
    page.goto(f"{server.url}/artifacts/artifact/{artifact_id}")
    page.wait_for_load_state("networkidle")
    body = page.locator("table").filter(has_text="Referring school").first
    sync_api.expect(body).to_be_visible()
    page.wait_for_timeout(1000)  # any image or prefetch the report could start, started
    return body


def test_a_hostile_case_report_keeps_its_shape_and_fetches_nothing_outside(
        clean_db: str, prefect_ui: Server, page: tuple[Any, Outside]) -> None:
    from tasks.case_report import render_case_report

    pg, outside = page
    _hostile_case(clean_db)
    markdown = render_case_report(clean_db, REFERENCE, today=date(2026, 12, 2))
    facts = _show(pg, prefect_ui, _publish(prefect_ui, markdown))
    try:
        # No request left for an outside address: no image, no prefetch, nothing.
        assert outside.urls == [], outside.urls
        # The facts table keeps its shape: fifteen rows, no forged ones, the real status.
        rows = facts.locator("tr")
        assert rows.count() == 1 + FACTS, rows.all_inner_texts()
        cells = {r.locator("td").first.inner_text().strip(): r.locator("td").nth(1)
                 .inner_text().strip() for r in rows.all()[1:]}
        assert cells["Status"] == "escalated"
        assert cells["Safeguarding concern"].startswith("YES, raised by agency other_la")
        # The forged rows are shown as the text they are, inside the address cell, and so is
        # the HTML.
        shown = cells["Last known address"].replace("\u200b", "")
        assert "| Safeguarding concern | no |" in shown and "| Status | closed |" in shown
        assert HTML_IMG in shown
        # Five tables (facts, found, timeline, checks, messages): no fence swallowed any.
        content = pg.locator("table").filter(has_text="Referring school").locator(
            "xpath=ancestor::*[count(.//table) >= 5][1]")
        assert content.locator("table").count() == 5
        # Nothing the free text tried became markup.
        assert pg.locator("img[src*='evil'], img[src^='http']").count() == 0
        assert content.locator("img").count() == 0
        assert content.locator("pre, code, script, iframe").count() == 0
        assert pg.locator("a[href^='javascript:' i]").count() == 0
        assert content.locator("a").count() == 0  # no link from referral text at all
        text = content.inner_text().replace("\u200b", "")
        for literal in ("![pixel](http://evil.example/pixel.png)",
                        "[click](javascript:alert(1))", "swallow the rest",
                        "someone@evil.example"):
            assert literal in text, literal
    except Exception:
        _screenshot(pg, "browser-hostile-case-report")
        raise
    _screenshot(pg, "browser-hostile-case-report")


def _screenshot(page: Any, name: str) -> None:
    folder = Path(os.environ.get("CME_TEST_ARTIFACTS", "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_the_guard_would_see_an_outside_fetch(prefect_ui: Server,
                                              page: tuple[Any, Outside]) -> None:
    """The same page with an image the escaping did not stop: the guard counts its fetch, so
    an empty count above means the report fetched nothing (not that nothing was watched)."""
    pg, outside = page
    unescaped = ("# Case X\n\n| | |\n|---|---|\n| Referring school | x |\n\n"
                 f"![pixel](http://{OUTSIDE}/pixel.png)\n")
    pg.goto(f"{prefect_ui.url}/artifacts/artifact/{_publish(prefect_ui, unescaped)}")
    pg.wait_for_load_state("networkidle")
    pg.wait_for_timeout(1000)
    assert any(OUTSIDE in u for u in outside.urls), outside.urls
    assert re.search(r"Referring school", pg.content())
