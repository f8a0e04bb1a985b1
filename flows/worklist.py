"""The officer's worklist in the Prefect UI: a keyed markdown artifact, ``worklist``.

Published by the ``worklist`` flow (Quick run from its deployment), and refreshed at the end of
every night, every intake and every officer flow (:func:`refresh_worklist`). The artifact is
keyed, so its page (Artifacts → worklist) always shows the latest version, and every earlier
one stays in its history. References, codes and agency references only: everyone who can open
the UI can read it.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.orchestration import get_client

from flows._config import db_url
from policy import london_date
from tasks.case_report import md_text
from tasks.reports import london_when
from tasks.worklist import WHY_TEXT, Why, WorkItem, build_worklist

__all__ = ["WORKLIST_KEY", "publish_worklist", "refresh_worklist", "worklist"]

#: The artifact's key: its page is ``/artifacts/key/worklist`` in the UI.
WORKLIST_KEY = "worklist"


#: The officer flows each line links to (its run form, filled in with the reference).
ACTIONS: dict[str, str] = {
    "Case report": "case-report/case-report",
    "Decide": "decide-case/decide-case",
    "Record reply": "record-agency-response/record-agency-response",
    "Close": "close-case/close-case",
}
_ACTIONS_FOR: dict[Why, tuple[str, ...]] = {
    Why.safeguarding: ("Case report", "Close"),
    Why.acknowledgement_overdue: ("Case report",),
    Why.message_failed: ("Case report",),
    Why.message_not_queued: ("Case report",),
    Why.decision_proposed: ("Case report", "Decide"),
    Why.possible_match: ("Case report", "Decide"),
    Why.possible_duplicate: ("Case report",),
    Why.conflicting_evidence: ("Case report", "Decide"),
    Why.located_in_area: ("Case report", "Close"),
    Why.attendance_pmooe: ("Case report", "Decide", "Close"),
    Why.attendance_details: (),
    Why.deferred_overdue: ("Case report", "Record reply"),
    Why.school_contact_differs: ("Case report",),
    Why.school_contact_unverified: ("Case report",),
    Why.quarantined: (),
}


async def _deployment_ids() -> dict[str, str]:
    """Each officer deployment's id, where it is deployed (none in the demo)."""
    ids: dict[str, str] = {}
    async with get_client() as client:
        for label, name in ACTIONS.items():
            try:
                ids[label] = str((await client.read_deployment_by_name(name)).id)
            except Exception:  # noqa: BLE001, S112 - not deployed here: no link for it
                continue
    return ids


def _links(item: WorkItem, ids: dict[str, str]) -> str:
    if not item.reference:
        return "—"
    params = quote(json.dumps({"reference": item.reference}))
    return " · ".join(
        f"[{label}](/v2/deployments/deployment/{ids[label]}/run?parameters={params})"
        for label in _ACTIONS_FOR[item.why] if label in ids) or "—"


def worklist_markdown(items: list[WorkItem], today: date, ids: dict[str, str]) -> str:
    """The worklist as a markdown table, each line with links to the run forms that act on
    it, filled in with its reference (references and codes only; all text escaped)."""
    lines = [f"# Worklist — {today:%d %b %Y}", "",
             f"{len(items)} case(s) need a person, most urgent first (refreshed "
             f"{md_text(london_when(datetime.now(UTC)))}). Each line's links open the run "
             "form for that case, filled in.", ""]
    if not items:
        return "\n".join([*lines, "Nothing needs a person now."]) + "\n"
    lines += ["| # | why | case | since | details | next step | act |",
              "|---|---|---|---|---|---|---|"]
    for n, i in enumerate(items, start=1):
        lines.append(f"| {n} | {md_text(WHY_TEXT[i.why])} | {md_text(i.reference)} | "
                     f"{md_text(london_when(i.since))} | {md_text(i.detail)} | "
                     f"{md_text(i.next_step)} | {_links(i, ids)} |")
    return "\n".join(lines) + "\n"


#: How many items a run's log lists (the artifact holds them all).
LOGGED = 100


def log_worklist(items: list[WorkItem]) -> None:
    """The worklist in the run's log too: the Logs tab is what a run's page opens on, so the
    list is in front of the officer on the night's run and after every officer flow."""
    logger = get_run_logger()
    logger.info("Worklist: %d case(s) need a person, most urgent first (Artifacts → worklist)",
                len(items))
    for n, i in enumerate(items[:LOGGED], start=1):
        logger.info("%d. %s — %s — since %s — %s — next: %s", n, WHY_TEXT[i.why],
                    i.reference or "(no reference)", london_when(i.since), i.detail, i.next_step)
    if len(items) > LOGGED:
        logger.info("… and %d more on the worklist artifact", len(items) - LOGGED)


async def publish_worklist(items: list[WorkItem], today: date) -> None:
    """Publish ``items`` as the ``worklist`` artifact (an empty list says so), and log them."""
    log_worklist(items)
    await acreate_markdown_artifact(
        key=WORKLIST_KEY, markdown=worklist_markdown(items, today, await _deployment_ids()),
        description=f"Cases that need a person, most urgent first — {len(items)} on "
        f"{today:%d %b %Y}. References only.",
    )


async def refresh_worklist(today: date | None = None) -> int:
    """Rebuild and publish the worklist; returns how many items it holds. Never fails the
    calling flow: a worklist that cannot be published is logged and left as it was."""
    day = today or london_date(datetime.now(UTC))
    try:
        items = build_worklist(db_url(), day)
        await publish_worklist(items, day)
    except Exception as exc:  # noqa: BLE001 - the caller's work is done; say why and go on
        get_run_logger().warning("the worklist could not be refreshed (%s)", type(exc).__name__)
        return -1
    return len(items)


def _name() -> str:
    return f"worklist {london_date(datetime.now(UTC)):%Y-%m-%d}"


@flow(name="worklist", flow_run_name=_name, persist_result=False)
async def worklist() -> dict[str, Any]:
    """Show every case that needs a person, most urgent first: safeguarding concerns, overdue
    acknowledgements, decisions waiting for an officer, possible matches, conflicting
    evidence, children found in our area, overdue agency replies and referrals that could not
    be read. The list is on this run's Artifacts tab and on Artifacts → worklist."""
    today = london_date(datetime.now(UTC))
    items = build_worklist(db_url(), today)
    await publish_worklist(items, today)
    counts: dict[str, int] = {}
    for i in items:
        counts[i.why.value] = counts.get(i.why.value, 0) + 1
    return {"today": today.isoformat(), "items": len(items), "by_why": counts}
