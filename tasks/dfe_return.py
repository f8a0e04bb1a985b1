"""The termly CME return to the DfE: counts as at a census date (README, "The termly DfE
return"). Counts only — no personal data leaves in it — and a validation list, by reference,
of the cases that cannot be counted cleanly, for an officer to fix before the deadline.

Conventions (pinned by tests):

- a child was **CME on the census date** when their case is a CME case (kind CME, classified
  CME, not a linked duplicate), was received on or before the census date, and was not closed
  before it (a case closed on the census date still counts; closed the day before, not);
- the day a child **became CME** is the London date their referral was received; the time
  missing at the census date is counted from it, in the bands of the data file;
- the **primary reason** is the case's classification reason, mapped by the data file's
  ``primary_reason`` table; **stopped being CME** counts cases closed from the term's first
  day to the day before the census date, by the ``stopped_reason`` table;
- **identified during the term**: received from the term's first day to the census date.

The categories live in ``flows/data/dfe_return.json``, one editable table per mapping.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Any

from sqlmodel import Session, col, select

import policy
from models import CaseStatus, Child, ClosureReason, Referral, ReferralKind, get_engine

__all__ = ["DfeReturn", "NOT_RECORDED", "ReturnSpec", "build_return", "load_spec"]

NOT_RECORDED = "Not recorded"


@dataclass(frozen=True)
class ReturnSpec:
    """The data file: census dates, bands and the two mapping tables, and whether verified."""

    census_dates: list[dict[str, str]]
    bands: list[dict[str, Any]]
    primary_reason: dict[str, str]
    stopped_reason: dict[str, str]
    verified: bool
    note: str

    def term_start(self, census: date) -> date:
        """The first day of the term whose census date is ``census``; for a date not in
        the file, the day after the previous census date (or 1 September)."""
        for c in self.census_dates:
            if date.fromisoformat(c["census_date"]) == census:
                return date.fromisoformat(c["term_start"])
        earlier = [date.fromisoformat(c["census_date"]) for c in self.census_dates
                   if date.fromisoformat(c["census_date"]) < census]
        if earlier:
            return date.fromordinal(max(earlier).toordinal() + 1)
        return date(census.year if census.month >= 9 else census.year - 1, 9, 1)

    def band(self, days: int) -> str:
        for b in self.bands:
            if days >= b["min_days"] and (b["max_days"] is None or days <= b["max_days"]):
                return str(b["label"])
        return NOT_RECORDED


def load_spec(text: str | None = None) -> ReturnSpec:
    """The data file (``flows/data/dfe_return.json``), or ``text`` in its shape."""
    raw = json.loads(text if text is not None else resources.files("flows.data").joinpath(
        "dfe_return.json").read_text(encoding="utf-8"))
    return ReturnSpec(census_dates=raw["census_dates"], bands=raw["bands"],
                      primary_reason=raw["primary_reason"],
                      stopped_reason=raw["stopped_reason"], verified=bool(raw["verified"]),
                      note=raw.get("verification_note", ""))


@dataclass
class DfeReturn:
    """The counts (``rows``: measure, category, count) and the validation list."""

    census_date: date
    term_start: date
    verified: bool
    rows: list[tuple[str, str, int]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def count(self, measure: str, category: str = "") -> int:
        return sum(n for m, c, n in self.rows if m == measure and c == category)


def _cme_cases(s: Session) -> list[tuple[Referral, Child]]:
    q = (select(Referral, Child).join(Child, col(Child.id) == col(Referral.child_id))
         .where(col(Referral.kind) == ReferralKind.CME, col(Referral.classification) == "CME",
                col(Referral.duplicate_of_id).is_(None)).order_by(col(Referral.id)))
    return [(r, c) for r, c in s.exec(q)]


def build_return(db_url: str, census: date, spec: ReturnSpec | None = None) -> DfeReturn:
    """The return as at ``census`` (see the module's conventions)."""
    spec = spec or load_spec()
    start = spec.term_start(census)
    out = DfeReturn(census_date=census, term_start=start, verified=spec.verified)
    bands: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    sexes: Counter[str] = Counter()
    years: Counter[int] = Counter()
    stopped: Counter[str] = Counter()
    total = identified = 0
    with Session(get_engine(db_url)) as s:
        for r, child in _cme_cases(s):
            ref = r.mendix_reference
            became = policy.london_date(r.received_at)
            closed = policy.london_date(r.closed_at) if r.closed_at else None
            if (r.status is CaseStatus.CLOSED) != (closed is not None):
                out.problems.append((ref, "conflicting status: closed without a closing "
                                          "date, or open with one"))
                continue
            if closed is not None and closed < became:
                out.problems.append((ref, "closed before it was received"))
                continue
            if became > census:
                continue
            if start <= became <= census:
                identified += 1
            if closed is not None and closed < census:
                if closed >= start:
                    why = r.closure_reason.value if r.closure_reason else ""
                    label = spec.stopped_reason.get(why)
                    if label is None:
                        out.problems.append((ref, f"closure reason {why or '(none)'} has no "
                                                  "DfE category in the data file"))
                        label = NOT_RECORDED
                    stopped[label] += 1
                continue
            total += 1
            bands[spec.band((census - became).days)] += 1
            label = spec.primary_reason.get(r.classification_reason)
            if label is None:
                out.problems.append((ref, "no primary reason recorded that maps to a DfE "
                                          "category"))
                label = NOT_RECORDED
            reasons[label] += 1
            sexes[{"M": "Male", "F": "Female"}.get(child.sex or "", NOT_RECORDED)] += 1
            if child.sex not in ("M", "F"):
                out.problems.append((ref, "sex not recorded"))
            years[policy.year_group(child.dob, census)] += 1
    out.rows.append(("cme_on_census_date", "", total))
    out.rows += [("time_missing", b["label"], bands[b["label"]]) for b in spec.bands]
    out.rows += [("primary_reason", label, n) for label, n in sorted(reasons.items())]
    out.rows += [("sex", label, n) for label, n in sorted(sexes.items())]
    out.rows += [("year_group", _year_label(yg), years[yg]) for yg in sorted(years)]
    out.rows.append(("identified_during_term", "", identified))
    out.rows.append(("stopped_during_term", "", sum(stopped.values())))
    out.rows += [("stopped_reason", label, n) for label, n in sorted(stopped.items())]
    return out


def _year_label(yg: int) -> str:
    return "Reception" if yg == 0 else f"Year {yg}" if yg > 0 else "Below reception"


# ClosureReason values the stopped_reason table may name (checked by a test).
CLOSURE_CODES = frozenset(c.value for c in ClosureReason)
