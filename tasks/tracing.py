"""Tracing: ask each agency about a chunk of referrals, record the answers, decide.

A night's work is O(chunks) task runs (DESIGN.md, measured Prefect facts): one
:func:`trace_chunk` per (connector × chunk of a few hundred referrals), running the
connector's requests concurrently inside under its own limits, then one
:func:`decide_chunk` per chunk.

Re-running is safe. A referral's tracing round is ``tracing_rounds + 1`` until its decision
is recorded, and ``check`` is unique per (referral, connector, round): an agency already
answered in this round is not asked again, and a re-run after the decision finds the case no
longer due (its ``next_check_due`` has moved on).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func
from sqlmodel import Session, col, select

import policy
from connectors import (
    CheckOutcome as ConnectorOutcome,
)
from connectors import (
    Connector,
    Enquiry,
    TraceSubject,
    load_enabled,
    run_connector,
    run_deferred_poll,
    run_deferred_submit,
)
from models import (
    CaseOutcome,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    NotificationChannel,
    Referral,
    School,
    Template,
    get_engine,
    session_scope,
)
from notifications import queue_notification
from tasks._agencies import agency_transport, connector_overrides
from tasks._common import event, initials, insert_ignoring_duplicates

__all__ = [
    "ChunkReport",
    "DecideReport",
    "TraceConfig",
    "decide_chunk",
    "decide_referrals",
    "select_due",
    "trace_chunk",
    "trace_referrals",
]

#: Cases the nightly run looks at (when due). Closed cases are never traced.
TRACEABLE = (
    CaseStatus.RECEIVED,
    CaseStatus.ACKNOWLEDGED,
    CaseStatus.TRACING,
    CaseStatus.AWAITING_RESPONSE,
    CaseStatus.ESCALATED,
    CaseStatus.NEEDS_REVIEW,
    CaseStatus.WHEREABOUTS_UNKNOWN,
    CaseStatus.LEFT_UK,
    CaseStatus.LOCATED,
    CaseStatus.TRANSFERRED,
)


@dataclass(frozen=True)
class TraceConfig:
    """Plain values a tracing task needs (tasks get ids and config, never clients)."""

    db_url: str
    connectors: tuple[str, ...]
    today: date
    run_id: str
    channel: str = "file"
    home_la: str = "850"
    min_rounds: int = 3
    duty_inbox: str = "cme-duty@la.example.org"
    la_name: str = "Hampshire County Council"
    other_la_contacts: dict[str, str] = field(default_factory=dict)
    sandbox_world: str | None = None


@dataclass
class ChunkReport:
    """Counts only (safe for logs and artifacts)."""

    connector: str
    asked: int = 0
    skipped_already_checked: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    http_calls: int = 0


@dataclass
class DecideReport:
    decided: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    notifications_queued: int = 0
    chases: int = 0


# --- selection -------------------------------------------------------------------------


def select_due(db_url: str, today: date, *, references: Sequence[str] | None = None,
               force: bool = False) -> list[int]:
    """Ids of the referrals to trace now, oldest first.

    With ``references``, only those (and, with ``force``, even if not yet due, as long as
    they are not closed).
    """
    with Session(get_engine(db_url)) as s:
        q = select(Referral.id).where(
            col(Referral.status).in_(TRACEABLE),
            col(Referral.duplicate_of_id).is_(None),
        )
        if references is not None:
            q = q.where(col(Referral.mendix_reference).in_(list(references)))
        if not force:
            q = q.where(col(Referral.next_check_due).is_not(None),
                        col(Referral.next_check_due) <= today)
        return [i for i in s.exec(q.order_by(col(Referral.id))) if i is not None]


def chunked(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


# --- agencies --------------------------------------------------------------------------

_CONNECTORS: dict[tuple[str, str], Connector] = {}


def _connector(name: str, run_id: str, sandbox_world: str | None = None) -> Connector:
    # One instance per connector per run in this process, so its circuit breaker and rate
    # limiter see the whole night, not one chunk.
    key = (name, run_id)
    if key not in _CONNECTORS:
        for old in [k for k in _CONNECTORS if k[0] == name]:
            del _CONNECTORS[old]
        _CONNECTORS[key] = load_enabled([name], settings=connector_overrides(sandbox_world))[0]
    return _CONNECTORS[key]


def _subject(r: Referral, c: Child, school: School) -> TraceSubject:
    parent_surname = None
    for p in c.parents or []:
        name = (p.get("name") or "").split()
        if name:
            parent_surname = name[-1]
            break
    return TraceSubject(
        reference=r.mendix_reference, upn=c.upn, forename=c.forename, surname=c.surname,
        former_surnames=tuple(c.former_surnames or ()), dob=c.dob, sex=c.sex,
        postcode=c.postcode, address_line=c.address_line1, town=c.town,
        last_school_urn=school.urn, home_la=school.la_code, parent_surname=parent_surname,
        nhs_number=c.nhs_number,
    )


def _failed_poll(chk: Check) -> bool:
    """A poll of a filed enquiry that failed (only polls carry the agency's reference on an
    error): ask about the same enquiry again. Only a 4xx — the agency does not know the
    reference — means the request must be filed (and the child's details sent) again."""
    return chk.outcome is CheckOutcome.ERROR and not (chk.error_code or "").startswith("http_4")


def _check_row(o: ConnectorOutcome, referral_id: int, round_: int, run_id: str
               ) -> dict[str, Any]:
    res = o.result
    return {
        "referral_id": referral_id,
        "connector": o.connector,
        "connector_version": o.connector_version,
        "round": round_,
        "run_id": run_id,
        "fields_disclosed": list(o.disclosed_fields),
        "outcome": CheckOutcome(res.outcome.value),
        "evidence": {"items": [e.model_dump(mode="json") for e in res.evidence]}
        if res.evidence else None,
        "agency_reference": res.agency_reference,
        "expected_by": res.expected_by,
        "error_kind": res.error_kind,
        "error_code": res.error_code,
        "checked_at": o.checked_at,
    }


async def trace_referrals(connector_name: str, referral_ids: Sequence[int], cfg: TraceConfig,
                          *, transport: httpx.AsyncBaseTransport | None = None) -> ChunkReport:
    """Ask one agency about these referrals (this round) and record every answer."""
    report = ChunkReport(connector=connector_name)
    if not referral_ids:
        return report
    connector = _connector(connector_name, cfg.run_id, cfg.sandbox_world)
    with Session(get_engine(cfg.db_url), expire_on_commit=False) as s:
        rows = s.exec(
            select(Referral, Child, School)
            .join(Child, col(Child.id) == Referral.child_id)
            .join(School, col(School.id) == Referral.school_id)
            .where(col(Referral.id).in_(list(referral_ids)))
        ).all()
        rounds = {r.id: r.tracing_rounds + 1 for r, _, _ in rows}
        done = {
            rid for rid, rnd in s.exec(
                select(Check.referral_id, Check.round).where(
                    col(Check.referral_id).in_(list(referral_ids)),
                    Check.connector == connector_name,
                )
            ) if rounds.get(rid) == rnd
        }
        previous: dict[int, Check] = {}
        if connector.deferred:
            for chk in s.exec(
                select(Check).where(col(Check.referral_id).in_(list(referral_ids)),
                                    Check.connector == connector_name)
                .order_by(col(Check.round))
            ):
                previous[chk.referral_id] = chk  # the latest round wins
    todo = [(r, c, sc) for r, c, sc in rows if r.id not in done]
    report.skipped_already_checked = len(rows) - len(todo)
    by_ref = {r.mendix_reference: r for r, _, _ in todo}
    if transport is None:
        transport = agency_transport(cfg.sandbox_world, cfg.today)

    outcomes: list[ConnectorOutcome] = []
    carried: list[dict[str, Any]] = []
    if not connector.deferred:
        subjects = [_subject(r, c, sc) for r, c, sc in todo]
        outcomes = await run_connector(connector, subjects, transport=transport)
    else:
        to_submit, to_poll = [], []
        for r, c, sc in todo:
            prev = previous.get(r.id or 0)
            if prev is not None and prev.agency_reference and (
                    prev.outcome is CheckOutcome.PENDING or _failed_poll(prev)):
                to_poll.append(Enquiry(r.mendix_reference, prev.agency_reference))
            elif prev is not None and prev.outcome in (CheckOutcome.FOUND, CheckOutcome.NOT_FOUND):
                # A formal request is answered once; carry the answer into this round
                # without asking again (nothing disclosed).
                carried.append({
                    "referral_id": r.id, "connector": connector_name,
                    "connector_version": prev.connector_version, "round": rounds[r.id],
                    "run_id": cfg.run_id, "fields_disclosed": [], "outcome": prev.outcome,
                    "evidence": prev.evidence, "agency_reference": prev.agency_reference,
                    "expected_by": prev.expected_by, "error_kind": None, "error_code": None,
                    "checked_at": datetime.now(UTC),
                })
            else:
                to_submit.append(_subject(r, c, sc))
        if to_submit:
            outcomes += await run_deferred_submit(connector, to_submit, transport=transport)
        if to_poll:
            outcomes += await run_deferred_poll(connector, to_poll, transport=transport)

    check_rows = [
        _check_row(o, by_ref[o.subject_reference].id or 0,
                   rounds[by_ref[o.subject_reference].id], cfg.run_id)
        for o in outcomes
    ] + carried
    with session_scope(cfg.db_url) as s:
        insert_ignoring_duplicates(s, Check.__table__, check_rows)  # type: ignore[attr-defined]
    report.asked = len(outcomes)
    for row in check_rows:
        report.outcomes[str(row["outcome"].value if hasattr(row["outcome"], "value")
                            else row["outcome"])] += 1
    for o in outcomes:
        report.http_calls += o.http_calls
        if o.result.error_code:
            report.errors[f"{o.result.error_kind}/{o.result.error_code}"] += 1
    return report


@task(name="trace-chunk", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="trace-{connector_name}-chunk-{chunk_no}")
async def trace_chunk(connector_name: str, referral_ids: list[int], cfg: TraceConfig,
                      chunk_no: int = 0) -> ChunkReport:
    """Prefect task: one connector × one chunk of referrals (ids only cross the boundary)."""
    return await trace_referrals(connector_name, referral_ids, cfg)


# --- deciding --------------------------------------------------------------------------

_ADDR = re.compile(r"[^A-Z0-9]")


def _result_for_policy(chk: Check) -> policy.CheckResult:
    items = (chk.evidence or {}).get("items", []) if chk.evidence else []
    la = urn = postcode = addr = country = ctf = None
    departure = seen = None
    safeguarding = False
    for e in items:
        safeguarding = safeguarding or bool(e.get("safeguarding"))
        if e.get("kind") == "on_roll" and e.get("on_roll", True) is not False:
            urn = urn or e.get("school_urn")
            la = la or e.get("la_code")
        if e.get("kind") in ("resident", "address"):
            la = la or e.get("la_code")
            postcode = postcode or e.get("postcode")
            if e.get("address") or e.get("postcode"):
                addr = addr or _ADDR.sub("", f"{e.get('address') or ''}{e.get('postcode') or ''}"
                                         .upper())
        if e.get("kind") == "departure":
            departure = date.fromisoformat(e["departure_date"])
            country = e.get("departure_country")
        if e.get("kind") == "arrival" and e.get("departure_date"):
            seen = date.fromisoformat(e["departure_date"])
        if e.get("kind") == "ctf":
            ctf = e.get("ctf_destination_la") or e.get("ctf_destination")
        if e.get("date_seen") and e.get("kind") in ("resident", "address", "on_roll"):
            d = date.fromisoformat(e["date_seen"])
            seen = max(seen, d) if seen else d
    return policy.CheckResult(
        connector=chk.connector, outcome=policy.CheckOutcome(chk.outcome.value), la_code=la,
        school_urn=urn, address_key=addr, postcode=postcode, departure_date=departure,
        departure_country=country, seen_on=seen, ctf_destination=ctf,
        safeguarding=safeguarding, expected_by=chk.expected_by,
    )


def _resolution_step(outcome: str) -> str:
    return {
        "on_roll_elsewhere": "on_roll_elsewhere",
        "resident_other_la": "resident_other_la",
        "left_uk": "left_uk",
        "whereabouts_unknown": "whereabouts_unknown",
    }.get(outcome, outcome)


def decide_referrals(referral_ids: Sequence[int], cfg: TraceConfig) -> DecideReport:
    """Apply ``policy.decide`` to each referral's latest answers; write status, events and
    the outbox rows in one transaction per chunk."""
    report = DecideReport()
    channel = NotificationChannel(cfg.channel)
    enabled = frozenset(cfg.connectors)
    with session_scope(cfg.db_url) as s:
        rows = s.exec(
            select(Referral, Child, School)
            .join(Child, col(Child.id) == Referral.child_id)
            .join(School, col(School.id) == Referral.school_id)
            .where(col(Referral.id).in_(list(referral_ids)),
                   col(Referral.status).in_(TRACEABLE))
        ).all()
        checks: dict[int, dict[str, Check]] = defaultdict(dict)
        for chk in s.exec(
            select(Check).where(col(Check.referral_id).in_(list(referral_ids)))
            .order_by(col(Check.round), col(Check.id))
        ):
            checks[chk.referral_id][chk.connector] = chk  # latest round per connector wins
        for r, child, school in rows:
            rid = r.id or 0
            this_round = r.tracing_rounds + 1
            latest = checks.get(rid, {})
            if not any(c.round == this_round for c in latest.values()):
                continue  # nothing asked this round (e.g. no connector ran): nothing to decide
            facts = policy.CaseFacts(
                reference=r.mendix_reference, school_urn=school.urn,
                received=policy.london_date(r.received_at), safeguarding=r.safeguarding_concern,
                home_la=cfg.home_la, school_la=school.la_code, rounds=this_round,
                enabled_connectors=enabled,
            )
            results = [_result_for_policy(c) for name, c in latest.items() if name in enabled]
            d = policy.decide(facts, results, cfg.today, min_rounds=cfg.min_rounds)
            before = r.status
            r.tracing_rounds = this_round
            r.status = CaseStatus(d.status)
            r.outcome = CaseOutcome(d.outcome) if d.outcome else None
            r.decision_rule = str(d.rule)
            r.next_check_due = policy.next_check_due(str(d.status), cfg.today)
            r.updated_at = datetime.now(UTC)
            report.decided += 1
            report.statuses[str(d.status)] += 1
            report.rules[str(d.rule)] += 1
            change = f"{before.value} → {d.status}" if before.value != str(d.status) else \
                f"stays {d.status}"
            event(s, rid, "decision",
                  f"Round {this_round}: rule {d.rule}; {change}"
                  + (f"; outcome {d.outcome}" if d.outcome else ""), rule=str(d.rule))
            report.notifications_queued += _act(s, r, child, school, d, cfg, channel, report)
    return report


def _act(s: Session, r: Referral, child: Child, school: School, d: policy.Decision,
         cfg: TraceConfig, channel: NotificationChannel, report: DecideReport) -> int:
    rid = r.id or 0
    ref = r.mendix_reference
    common = {"reference": ref, "initials": initials(child), "school_name": school.name}
    queued = 0
    for a in d.actions:
        kind = a.kind
        if kind is policy.ActionKind.NOTIFY_SCHOOL and d.outcome:
            queued += queue_notification(
                s, referral_id=rid, template=Template.resolution, recipient=school.email,
                personalisation={**common, "outcome": str(d.outcome)},
                channel=channel, idempotency_key=f"resolution:{ref}:{d.outcome}",
            )
        elif kind is policy.ActionKind.NOTIFY_OTHER_LA and a.la_code:
            recipient = cfg.other_la_contacts.get(a.la_code, cfg.duty_inbox)
            queued += queue_notification(
                s, referral_id=rid, template=Template.inter_la, recipient=recipient,
                personalisation={"reference": ref, "initials": initials(child),
                                 "other_la_code": a.la_code, "la_name": cfg.la_name},
                channel=channel, idempotency_key=f"inter_la:{ref}:{a.la_code}",
            )
        elif kind is policy.ActionKind.SAFEGUARDING_TASK:
            if queue_notification(
                s, referral_id=rid, template=Template.safeguarding_task,
                recipient=cfg.duty_inbox, personalisation={"reference": ref},
                channel=channel, idempotency_key=f"safeguarding:{ref}:tracing",
            ):
                queued += 1
                event(s, rid, "safeguarding",
                      "Safeguarding concern raised by tracing: a person must review now",
                      rule="safeguarding")
        elif kind is policy.ActionKind.CHASE_DEFERRED:
            report.chases += 1
            event(s, rid, "chase",
                  f"{a.connector} enquiry past its expected-by date: re-polled; an officer "
                  "should chase the agency", rule=str(d.rule))
        elif kind is policy.ActionKind.RECOMMEND_LPD_UPLOAD:
            event(s, rid, "recommendation",
                  f"Recommend the school uploads the CTF to the LPD with destination "
                  f"{a.destination}", rule=str(d.rule))
        elif kind is policy.ActionKind.RECOMMEND_JOINT_DELETION:
            event(s, rid, "recommendation",
                  "Recommend a joint deletion decision with the school (9(1)(h)/(i))",
                  rule=str(d.rule))
        elif kind is policy.ActionKind.OFFICER_REVIEW:
            event(s, rid, "officer_review", "An officer must review this case",
                  rule=str(d.rule))
    return int(queued)


@task(name="decide-chunk", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="decide-chunk-{chunk_no}")
def decide_chunk(referral_ids: list[int], cfg: TraceConfig, chunk_no: int = 0) -> DecideReport:
    """Prefect task: decide one chunk (one transaction: status, events, outbox rows)."""
    return decide_referrals(referral_ids, cfg)


def count_open(db_url: str) -> int:
    with Session(get_engine(db_url)) as s:
        return int(s.exec(select(func.count()).select_from(Referral)
                          .where(col(Referral.status).in_(TRACEABLE))).one())


def ids_to_refs(db_url: str, ids: Iterable[int]) -> list[str]:
    with Session(get_engine(db_url)) as s:
        return list(s.exec(select(Referral.mendix_reference)
                           .where(col(Referral.id).in_(list(ids)))))
