"""An officer's journeys through the Prefect UI (the default, V2 UI), click by click.

Each journey starts on the UI's landing page and only clicks and types into forms — never an
address — as an officer would (docs/officer-guide.md walks the same paths). A
:class:`Journey` counts the clicks and keeps a viewport screenshot of each step worth showing.
Imported by name from the browser tests (test folders are not packages).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

RUN_TIMEOUT_MS = 180_000


@dataclass
class Journey:
    """One officer journey: its clicks, counted, and its screenshots."""

    name: str
    page: Page
    shots: Path
    clicks: int = 0
    resubmits: int = 0  # Submit again after the UI's server was busy (not a step)
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
        again = f" (+{self.resubmits} resubmitted: server busy)" if self.resubmits else ""
        return f"journey {self.name!r}: {self.clicks} clicks{again}"


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
    """On a run form: Submit, then View run in the toast that says it is scheduled.

    The UI server's own SQLite can be busy on a loaded machine, and the UI then shows
    "Unknown error while creating flow run" (nothing was created): an officer submits again,
    and so does this, up to three times. Such a resubmission is counted apart from the
    journey's clicks. A refusal is told by the number of refusal toasts going up, not by the
    last one going away: the toast library pauses its timer while the pointer is over it.
    """
    page = j.page
    view_run = page.get_by_role("button", name="View run")
    refused = page.get_by_text("error while creating flow run")
    for attempt in range(4):
        before = refused.count()
        submit = page.get_by_role("button", name="Submit", exact=True)
        if attempt == 0:
            j.click(submit)
        else:
            submit.click()
            j.resubmits += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if view_run.first.is_visible() or refused.count() > before:
                break
            page.wait_for_timeout(200)
        if view_run.first.is_visible():
            break
        if refused.count() <= before:
            raise AssertionError(f"{j.name}: no answer from the UI 60 s after Submit")
        page.mouse.move(0, 0)  # off the toasts, so they can time out
        try:  # a clean slate, so the next refusal is a new toast (not essential)
            refused.first.wait_for(state="hidden", timeout=10_000)
        except PlaywrightTimeout:
            pass
    else:
        raise AssertionError(f"{j.name}: the UI refused to create the run four times")
    j.click(view_run.first)
    page.wait_for_url(re.compile(r"/runs/flow-run/"))


def wait_final(page: Page, state: str) -> None:
    expect(page.get_by_text(state, exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
