"""An officer in the Prefect UI, driven in Debian's Chromium (headless) by Playwright.

Journeys from the landing page, by clicks only (issue 15, point 8; docs/officer-guide.md):
find today's work on the worklist, open a safeguarding case's report from it, answer a
decision waiting as a suspended run and see the worklist change, and a mistyped reference
failing with one line. Each journey counts its clicks, prints them and keeps viewport
screenshots (under the test artifacts, ``officer-guide/``). Also: an ad-hoc trace-referral
run from a typed reference, the case-report markdown and the nightly-summary table."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from uikit import ARTIFACTS, references_by_scenario, run

pytestmark = pytest.mark.browser

#: One round that counts is enough for a proposal: two nights make a "whereabouts unknown"
#: proposal, so the worklist and the waiting decisions have something to show.
STACK_ENV = {"CME_MIN_ROUNDS": "1"}
#: Where the journeys' screenshots go (docs/officer-guide/ holds a copy of them).
GUIDE_SHOTS = ARTIFACTS / "officer-guide"
#: Sane upper bounds on an officer's clicks from the landing page, per journey.
MAX_CLICKS = {"find the worklist": 5, "read a case report": 10, "answer a waiting decision": 10,
              "mistyped reference": 9}

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, never a downloaded browser; flags that keep it quiet in a container.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_MS = 150_000

if not CHROMIUM.exists() and os.environ.get("CI"):
    # CI installs chromium (.ci/run); a missing browser there is a broken CI, not a skip.
    pytest.fail("/usr/bin/chromium is missing in CI (apt-get install -y chromium)",
                pytrace=False)
if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is missing (pip install playwright)")
# Needs playwright: imported once the skip above has had its say.
import officer_journeys as oj  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                              headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def officer_world(ui_stack: Any) -> dict[str, Any]:
    """Two nights (the sandbox a day on between them): safeguarding concerns, proposals,
    and one suspended ``decide …`` run per proposal. The worklist's items as of night 2."""
    from datetime import UTC, datetime, timedelta

    import httpx

    from policy import london_date
    from tasks.worklist import Why, build_worklist

    today = london_date(datetime.now(UTC))
    assert run("nightly-tracing/nightly", {}).state.is_completed()
    httpx.post(f"{ui_stack.sandbox_url}/_sandbox/advance", params={"days": 1},
               timeout=10).raise_for_status()
    night2 = run("nightly-tracing/nightly", {"today": (today + timedelta(days=1)).isoformat()})
    assert night2.state.is_completed(), night2.state
    items = build_worklist(ui_stack.db_url, today + timedelta(days=1))
    by_why: dict[Why, list[str]] = {}
    for i in items:
        by_why.setdefault(i.why, []).append(i.reference)
    return {"by_why": by_why, "night": night2}


@pytest.fixture
def page(browser: Any, ui_stack: Any) -> Iterator[Any]:
    # 1280 × 800: a laptop's screen, and small screenshots for the guide.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def _screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _open(page: Any, stack: Any, path: str) -> None:
    """Go to a UI page, logging in first when the server asks (basic auth is on)."""
    page.goto(stack.ui_url + path)
    login = page.get_by_placeholder("admin:pass")
    page.wait_for_load_state("networkidle")
    if "/login" in page.url or login.is_visible():
        login.fill(stack.auth)
        page.get_by_role("button", name="Login").click()
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto(stack.ui_url + path)
    page.wait_for_load_state("networkidle")


def _type_parameter(page: Any, name: str, value: str) -> None:
    """Type into a parameter's input. The form's inputs are editor widgets (a textarea
    or a content-editable code editor, depending on the UI version), not plain inputs
    with labels, so find the first editable element after the parameter's label and type
    with the keyboard, as a person would."""
    label = page.locator(".schema-form-property__label, label").filter(
        has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")).first
    widget = label.locator(
        "xpath=following::*[self::textarea or self::input[not(@type='checkbox')] "
        "or @contenteditable='true'][1]")
    widget.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)


def _dismiss_toasts(page: Any) -> None:
    """Close notification toasts: one (e.g. the UI's Prefect Cloud advert) can sit over
    the form's Submit button."""
    for close in page.locator("#prefect-design-toast-app button").all():
        with contextlib.suppress(sync_api.Error):
            if close.is_visible() and not close.inner_text().strip():
                close.click(timeout=2_000)


def _run_artifact(flow_run_id: UUID) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
                any_=[flow_run_id])))
    assert len(found) == 1, f"flow run {flow_run_id} has {len(found)} artifacts"
    return found[0]


def _latest_artifact(key: str) -> Any:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC, limit=1)
    assert found, f"no artifact with key {key}"
    return found[0]


def _deployment_runs(deployment_id: UUID) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment_id])))


def _submitted_run(deployment_id: UUID, reference: str, earlier: set[UUID],
                   wait_s: float = 60.0) -> UUID:
    """The flow run the form created: this deployment's new run with this reference."""
    deadline = time.monotonic() + wait_s
    while True:
        runs = [r for r in _deployment_runs(deployment_id) if r.id not in earlier]
        mine = [r for r in runs if r.parameters.get("reference") == reference]
        if mine:
            return mine[0].id
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the form's Submit created no trace-referral run for the typed reference "
                f"within {wait_s:.0f} s ({len(runs)} other new runs of the deployment)")
        time.sleep(0.5)


def test_officer_runs_trace_referral_from_the_ui_and_it_completes(page: Any,
                                                                    ui_stack: Any) -> None:
    expect = sync_api.expect
    reference = references_by_scenario(ui_stack)["on_roll_other_la"][0]

    _open(page, ui_stack, "/deployments")
    try:
        # Thirteen deployments are more than a page: find it by name, as an officer would.
        page.get_by_placeholder(re.compile(r"^Search deployments")).first.fill("trace-referral")
        page.locator("a[href*='/deployments/deployment/']").filter(
            has_text=re.compile(r"^\s*trace-referral\s*$")).first.click()
        page.wait_for_url(re.compile(r"/deployments/deployment/"))
        deployment_id = UUID(page.url.split("/deployments/deployment/", 1)[1][:36])
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        page.wait_for_url(re.compile(r"/run"))
        _type_parameter(page, "Case reference", reference)
        _dismiss_toasts(page)
        earlier = {r.id for r in _deployment_runs(deployment_id)}
        submitted = time.monotonic()
        page.get_by_role("button", name="Submit", exact=True).click()
        # Submitting leaves the form for the deployment's page, where the new run is
        # listed and toasted. Its link text is a generated name that the UI may replace
        # after the form is read, so follow the run the server recorded for this
        # deployment and reference instead, and open its page as the toast would.
        page.wait_for_url(lambda url: not url.rstrip("/").endswith("/run"))
        flow_run_id = _submitted_run(deployment_id, reference, earlier)
        page.goto(f"{ui_stack.ui_url}/runs/flow-run/{flow_run_id}")
    except Exception:
        _screenshot(page, "browser-trace-referral-form")
        raise
    try:
        # The run's own state badge, in the page header (task runs show states too).
        expect(page.get_by_role("banner").get_by_text("Completed", exact=True)).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
        # Reported, not asserted (issue 15, point 7): what the officer waited, in the browser.
        print(f"trace-referral in the browser: Submit -> Completed shown "
              f"{time.monotonic() - submitted:.1f} s (load {os.getloadavg()[0]:.1f})")
    finally:
        _screenshot(page, "browser-trace-referral-run")

    from prefect import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert flow_run.parameters["reference"] == reference  # what was typed reached the flow
    assert flow_run.state is not None and flow_run.state.is_completed()


def test_case_report_markdown_renders_on_its_artifact_page(page: Any, ui_stack: Any) -> None:
    expect = sync_api.expect
    reference = references_by_scenario(ui_stack)["left_uk"][0]
    flow_run = run("case-report/case-report", {"reference": reference})
    assert flow_run.state.is_completed(), flow_run.state
    # The report has no key (a keyed artifact's data is copied into the event feed): it is
    # the run's artifact.
    _open(page, ui_stack, f"/artifacts/artifact/{_run_artifact(flow_run.id).id}")

    expect(page.get_by_role("heading", name=f"Case {reference}", exact=True)).to_be_visible()
    for section in ("Timeline", "Checks", "Notifications"):
        expect(page.get_by_role("heading", name=section, exact=True)).to_be_visible()
    # Rendered as tables, not shown as markdown source.
    expect(page.get_by_role("cell", name="Referring school", exact=True)).to_be_visible()
    assert "| Child |" not in page.content()
    _screenshot(page, "browser-case-report-artifact")


def test_nightly_summary_table_renders_on_its_artifact_page(page: Any, ui_stack: Any,
                                                            officer_world: Any) -> None:
    expect = sync_api.expect
    assert officer_world["night"].state.is_completed()  # the summary of the last night
    artifact = _latest_artifact("nightly-summary")
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert rows, "the nightly summary table is empty"

    _open(page, ui_stack, f"/artifacts/artifact/{artifact.id}")

    for header in rows[0]:
        expect(page.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
    for row in rows[:3]:  # cells hold rendered text (not accessible names): match text
        shown = page.get_by_role("row")
        for value in row.values():
            shown = shown.filter(has=page.get_by_role("cell").filter(
                has_text=re.compile(rf"^\s*{re.escape(str(value))}\s*$")))
        expect(shown.first).to_be_visible()
    expect(page.get_by_text(f"{len(rows)} Items", exact=True)).to_be_visible()
    _screenshot(page, "browser-nightly-summary-artifact")


# --- the officer's journeys, from the landing page, by clicks only (point 8) ----------------


def _journey(page: Any, ui_stack: Any, name: str) -> Any:
    oj.land(page, ui_stack.ui_url, ui_stack.auth)
    return oj.Journey(name, page, GUIDE_SHOTS)


def _done(j: Any) -> None:
    print(j.report())
    assert j.clicks <= MAX_CLICKS[j.name], j.report()


def test_an_officer_finds_a_safeguarding_case_and_a_proposed_decision_on_the_worklist(
        page: Any, ui_stack: Any, officer_world: Any) -> None:
    from tasks.worklist import WHY_TEXT, Why

    expect = sync_api.expect
    safeguarding = officer_world["by_why"][Why.safeguarding][0]
    proposed = officer_world["by_why"][Why.decision_proposed][0]
    j = _journey(page, ui_stack, "find the worklist")
    j.shot("01-landing")
    oj.open_worklist(j)
    for ref, why in ((safeguarding, Why.safeguarding), (proposed, Why.decision_proposed)):
        row = oj.worklist_row(page, ref)
        expect(row).to_be_visible()
        expect(row.get_by_role("cell", name=WHY_TEXT[why], exact=True)).to_be_visible()
    # The proposal's line acts on it: its links open the forms, filled in.
    expect(oj.worklist_row(page, proposed).get_by_role("link", name="Decide")).to_be_visible()
    j.shot("02-worklist")
    _done(j)


def test_an_officer_opens_a_case_report_from_the_worklist(page: Any, ui_stack: Any,
                                                          officer_world: Any) -> None:
    from tasks.worklist import Why

    expect = sync_api.expect
    ref = officer_world["by_why"][Why.safeguarding][0]
    j = _journey(page, ui_stack, "read a case report")
    oj.open_worklist(j)
    j.click(oj.worklist_row(page, ref).get_by_role("link", name="Case report"))
    # The worklist's link opened case-report's run form with the reference filled in.
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()
    expect(page.locator("textarea").first).to_have_value(ref)
    j.shot("03-case-report-form")
    oj.submit_prefilled_form(j)
    oj.wait_final(page, "Completed")
    # The run is named when it starts (point 3): the page shows the name it got.
    expect(page.get_by_text(f"case report {ref}", exact=True).first).to_be_visible(
        timeout=30_000)
    j.click(page.get_by_role("tab", name="Artifacts"))
    report = page.get_by_role("link", name=re.compile(rf"Case report {ref}"))
    expect(report.first).to_be_visible()
    j.shot("04-case-report-artifacts")  # the list of artifacts: no personal data on it
    j.click(report.first)
    expect(page.get_by_role("heading", name=f"Case {ref}", exact=True)).to_be_visible()
    for section in ("Timeline", "Checks"):
        expect(page.get_by_role("heading", name=section, exact=True)).to_be_visible()
    _screenshot(page, "browser-case-report-from-worklist")  # names on it: artifacts only
    _done(j)


def test_an_officer_answers_a_waiting_decision_and_the_worklist_changes(
        page: Any, ui_stack: Any, officer_world: Any) -> None:
    from prefect import get_client

    from tasks.worklist import Why

    expect = sync_api.expect
    proposed = officer_world["by_why"][Why.decision_proposed]
    j = _journey(page, ui_stack, "answer a waiting decision")
    oj.sidebar(j, "Runs")
    # The officer takes the first decision waiting on the Runs page.
    waiting = page.get_by_role("link", name=re.compile(
        r"^decide CME-\d{4}-\d{6}: whereabouts unknown")).first
    ref = re.search(r"CME-\d{4}-\d{6}", waiting.inner_text()).group(0)  # type: ignore[union-attr]
    assert ref in proposed, f"{ref} waits as a run but is not proposed on the worklist"
    j.click(waiting)
    page.wait_for_url(re.compile(r"/runs/flow-run/"))
    flow_run_id = UUID(page.url.split("/runs/flow-run/", 1)[1][:36])
    expect(page.get_by_role("tab", name="Logs")).to_be_visible()
    expect(page.get_by_text("Suspended", exact=True).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    j.shot("05-waiting-decision")
    j.click(page.get_by_role("button", name="Open menu").last)
    j.click(page.get_by_role("menuitem", name="Resume"))
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Case {ref}: the rulebook proposes")).to_be_visible(
        timeout=30_000)
    # The form's labels are words: the answers required (pre-selected), the rest optional,
    # and no class name of the code behind it.
    for label in ("Your decision", "Why", "LA code (Optional)", "Note (Optional)"):
        expect(dialog.get_by_text(label, exact=True)).to_be_visible()
    expect(dialog.get_by_text("What you decided on this case.")).to_be_visible()
    expect(dialog.get_by_text(re.compile(r"OfficerDecision|DecisionReason|DecisionForm|"
                                         r"(Your decision|Why) \(Optional\)"))).to_have_count(0)
    j.click(dialog.get_by_text("I checked the evidence and it is this child"))
    j.click(page.get_by_role("option", name=re.compile(r"^Joint decision agreed")))
    j.shot("06-resume-form")
    j.click(dialog.get_by_role("button", name="Resume", exact=True))
    oj.wait_final(page, "Completed")
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run_id).state
    assert state is not None and state.is_completed(), state
    # The run refreshed the worklist: its Artifacts tab has the new one, without this case.
    j.click(page.get_by_role("tab", name="Artifacts"))
    j.click(page.get_by_role("link", name=re.compile(r"^\s*MARKDOWN\s+worklist\b")).first)
    expect(page.get_by_role("heading", name=re.compile(r"^Worklist — "))).to_be_visible()
    expect(oj.worklist_row(page, ref)).to_have_count(0)
    _done(j)

    from sqlmodel import Session, select

    from models import Referral, get_engine

    with Session(get_engine(ui_stack.db_url)) as s:
        case = s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()
    assert case.outcome is not None and case.outcome.value == "whereabouts_unknown"
    assert case.proposed_outcome is None


def test_a_mistyped_reference_fails_with_one_line_in_the_ui(page: Any, ui_stack: Any) -> None:
    expect = sync_api.expect
    j = _journey(page, ui_stack, "mistyped reference")
    oj.sidebar(j, "Deployments")
    # More deployments than a page holds: the officer searches for it by name.
    search = page.get_by_placeholder(re.compile(r"^Search deployments")).first
    j.click(search)
    search.fill("trace-referral")
    j.click(page.get_by_role("link", name="trace-referral", exact=True).first)
    j.click(page.get_by_role("button", name=re.compile(r"^Run")).first)
    j.click(page.get_by_role("menuitem", name="Custom run"))
    box = page.locator("textarea").first
    j.click(box)
    box.fill(" cme-2026-099999 ")  # lower case, spaces around, and no such case
    j.shot("07-mistyped-form")
    oj.submit_prefilled_form(j)
    oj.wait_final(page, "Failed")
    # Trimmed and upper-cased before anything else: the run's name says which case it was.
    expect(page.get_by_text("trace CME-2026-099999", exact=True).first).to_be_visible(
        timeout=30_000)
    # The Details tab shows the run's state message: the one line (the Logs tab has it too,
    # once the run's logs have arrived).
    j.click(page.get_by_role("tab", name="Details"))
    expect(page.get_by_text("No case with reference CME-2026-099999 — check the worklist")
           .first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    j.shot("08-mistyped-failed")
    _done(j)
