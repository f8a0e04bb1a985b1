"""The ``dfe-return`` deployment: the termly CME return as a table artifact of counts
(README, "The termly DfE return")."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_table_artifact

from flows.adhoc import form
from flows.settings import get_settings
from policy import london_date
from tasks.dfe_return import build_return, load_spec

__all__ = ["dfe_return"]


@flow(name="dfe-return", persist_result=False)
async def dfe_return(
    census_date: date | None = form(None, "Census date", "The census date to count as at; "
                                    "leave blank for the latest census date in "
                                    "flows/data/dfe_return.json on or before today."),
) -> dict[str, Any]:
    """Count the children who were CME on the census date (counts only) and how many cases
    need fixing first (`cme report dfe-return` lists them by reference)."""
    spec = load_spec()
    if census_date is None:
        today = london_date(datetime.now(UTC))
        past = [date.fromisoformat(c["census_date"]) for c in spec.census_dates
                if date.fromisoformat(c["census_date"]) <= today]
        if not past:
            raise ValueError("no census date on or before today in flows/data/dfe_return.json")
        census_date = max(past)
    ret = build_return(get_settings().database_url, census_date, spec)
    table = [{"measure": m, "category": c, "count": n} for m, c, n in ret.rows]
    table.append({"measure": "cases_to_fix", "category": "", "count": len(ret.problems)})
    note = "" if ret.verified else " DfE categories NOT verified: check flows/data/dfe_return.json."
    await acreate_table_artifact(key="dfe-return", table=table,
                                 description=f"CME return as at {census_date.isoformat()} "
                                 f"(counts only).{note}")
    return {"census_date": census_date.isoformat(), "rows": len(ret.rows),
            "cases_to_fix": len(ret.problems)}
