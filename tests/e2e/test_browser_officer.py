"""An officer's ad-hoc run in the Prefect UI, driven in Debian's Chromium (headless) by
Playwright: log in, start trace-referral with a reference typed into the form, watch it
complete; then read the case-report markdown and the nightly-summary table artifacts."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from uikit import ARTIFACTS, references_by_scenario, run

pytestmark = pytest.mark.browser

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                              headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, ui_stack: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
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
    import time

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
        page.locator("a[href*='/deployments/deployment/']").filter(
            has_text=re.compile(r"^\s*trace-referral\s*$")).first.click()
        page.wait_for_url(re.compile(r"/deployments/deployment/"))
        deployment_id = UUID(page.url.split("/deployments/deployment/", 1)[1][:36])
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        page.wait_for_url(re.compile(r"/run"))
        _type_parameter(page, "reference", reference)
        _dismiss_toasts(page)
        earlier = {r.id for r in _deployment_runs(deployment_id)}
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


def test_nightly_summary_table_renders_on_its_artifact_page(page: Any, ui_stack: Any) -> None:
    expect = sync_api.expect
    flow_run = run("nightly-tracing/nightly", {})
    assert flow_run.state.is_completed(), flow_run.state
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
