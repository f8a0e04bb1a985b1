"""The officer's worklist in the Prefect UI: a keyed table artifact, ``worklist``.

Published by the ``worklist`` flow (Quick run from its deployment), and refreshed at the end of
every night, every intake and every officer flow (:func:`refresh_worklist`). The artifact is
keyed, so its page (Artifacts → worklist) always shows the latest version, and every earlier
one stays in its history. References, codes and agency references only: everyone who can open
the UI can read it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact

from flows._config import db_url
from policy import london_date
from tasks.reports import london_when
from tasks.worklist import WHY_TEXT, WorkItem, build_worklist

__all__ = ["WORKLIST_KEY", "publish_worklist", "refresh_worklist", "worklist"]

#: The artifact's key: its page is ``/artifacts/key/worklist`` in the UI.
WORKLIST_KEY = "worklist"


def _rows(items: list[WorkItem]) -> list[dict[str, Any]]:
    return [{"#": n, "why": WHY_TEXT[i.why], "reference": i.reference or "(no reference)",
             "since": london_when(i.since), "details": i.detail, "next step": i.next_step}
            for n, i in enumerate(items, start=1)]


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
    rows = _rows(items) or [{"#": 0, "why": "Nothing needs a person", "reference": "",
                             "since": "", "details": "", "next step": ""}]
    await acreate_table_artifact(
        key=WORKLIST_KEY, table=rows,
        description=f"Cases that need a person, most urgent first — {len(items)} on "
        f"{today:%d %b %Y} (refreshed {london_when(datetime.now(UTC))}). References only: open "
        "a case with the Case report deployment.",
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
