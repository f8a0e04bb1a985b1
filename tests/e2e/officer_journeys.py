"""An officer's journeys through the Prefect UI (the default, V2 UI), click by click.

Each journey starts on the UI's landing page and only clicks and types into forms — never an
address — as an officer would (docs/officer-guide.md walks the same paths). A
:class:`Journey` counts the clicks and keeps a viewport screenshot of each step worth showing.
Imported by name from the browser tests (test folders are not packages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

RUN_TIMEOUT_MS = 180_000


@dataclass
class Journey:
    """One officer journey: its clicks, counted, and its screenshots."""

    name: str
    page: Page
    shots: Path
    clicks: int = 0
    screenshots: list[Path] = field(default_factory=list)

    def click(self, locator: Any, **kw: Any) -> None:
        locator.click(**kw)
        self.clicks += 1

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        # The viewport, not the full page: what the officer sees, and a small file.
        self.page.screenshot(path=str(path))
        self.screenshots.append(path)
        return path

    def report(self) -> str:
        return f"journey {self.name!r}: {self.clicks} clicks"


def land(page: Page, ui_url: str, auth: str | None) -> None:
    """Open the UI's landing page (and log in when the server asks): where an officer's
    bookmark or the address `cme ui up` prints takes them. Not counted as a click."""
    page.goto(ui_url)
    login = page.get_by_placeholder("admin:pass")
    login.or_(page.get_by_role("link", name="Dashboard", exact=True)).first.wait_for()
    if auth and login.is_visible():
        login.fill(auth)
        page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/dashboard"))
    expect(page.get_by_text("Flow Runs").first).to_be_visible()
    page.wait_for_load_state("networkidle")


def sidebar(j: Journey, name: str) -> None:
    j.click(j.page.get_by_role("link", name=name, exact=True).first)
    j.page.wait_for_load_state("networkidle")


def open_worklist(j: Journey) -> None:
    """Landing page → Runs → the latest night → Artifacts → worklist."""
    page = j.page
    sidebar(j, "Runs")
    j.click(page.get_by_role("link", name=re.compile(r"^nightly \d{4}-\d\d-\d\d$")).first)
    j.click(page.get_by_role("tab", name="Artifacts"))
    j.click(page.get_by_role("link", name=re.compile(r"^\s*MARKDOWN\s+worklist\b")).first)
    expect(page.get_by_role("heading", name=re.compile(r"^Worklist — "))).to_be_visible()


def worklist_row(page: Page, reference: str) -> Any:
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=reference,
                                                               exact=True))


def submit_prefilled_form(j: Journey) -> None:
    """On a run form the worklist opened filled in: Submit, then View run, then wait."""
    page = j.page
    view_run = page.get_by_role("button", name="View run")
    refused = page.get_by_text("error while creating flow run")
    for _ in range(3):
        j.click(page.get_by_role("button", name="Submit", exact=True))
        view_run.or_(refused).first.wait_for(timeout=60_000)
        if view_run.first.is_visible():
            break
        # The server's own SQLite can be busy on a loaded machine ("Unknown error while
        # creating flow run"): nothing was created, and an officer submits again.
        refused.first.wait_for(state="hidden", timeout=30_000)
    j.click(view_run.first)
    page.wait_for_url(re.compile(r"/runs/flow-run/"))


def wait_final(page: Page, state: str) -> None:
    expect(page.get_by_text(state, exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
