"""Tracing: ask each agency about a chunk of referrals, record the answers, decide.

A night's work is O(chunks) task runs (docs/architecture.md, "Measured facts"): one
:func:`trace_chunk` per (connector × chunk of a few hundred referrals), running the
connector's requests concurrently inside under its own limits, then one
:func:`decide_chunk` per chunk.

Re-running is safe. A referral's tracing round is ``tracing_rounds + 1`` until its decision
is recorded, and ``check`` is unique per (referral, connector, round): an agency already
answered in this round is not asked again, and a re-run after the decision finds the case no
longer due (its ``next_check_due`` has moved on).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlmodel import Session, col, select

import policy
from connectors import (
    AgencyEnvironment,
    CheckEvidence,
    Connector,
    Enquiry,
    TraceSubject,
    load_enabled,
    run_connector,
    run_deferred_poll,
    run_deferred_submit,
)
from connectors import (
    CheckOutcome as ConnectorOutcome,
)
from models import (
    CaseEvent,
    CaseOutcome,
    CaseStatus,
    Check,
    CheckOutcome,
    Child,
    NotificationChannel,
    Referral,
    SafeguardingConcern,
    School,
    Template,
    get_engine,
    session_scope,
)
from notifications import keys
from tasks._agencies import agency_transport, connector_overrides, environment
from tasks._common import event, initials, insert_ignoring_duplicates, queue_message
from tasks.lifecycle import Transition, change_status

__all__ = [
    "ChunkReport",
    "DecideReport",
    "TraceConfig",
    "case_facts",
    "decide_chunk",
    "decide_referrals",
    "latest_results",
    "policy_results",
    "raise_concern",
    "record_decision",
    "select_due",
    "trace_chunk",
    "trace_referrals",
]

#: ``connector_version`` of a check an officer typed in (``record-agency-response``).
OFFICER_RECORDED = "officer"

#: ``error_code`` of an answer carried into a round whose stored evidence does not read
#: (connectors.CheckEvidence): the next round asks the agency again.
UNREADABLE_EVIDENCE = "evidence_unreadable"

#: Cases the nightly run looks at (when due): every open status (policy.OPEN_STATUSES, in
#: the graph's order). Closed cases are never traced.
TRACEABLE = tuple(st for st in CaseStatus if st in policy.OPEN_STATUSES)


@dataclass(frozen=True)
class TraceConfig:
    """Plain values a tracing task needs (tasks get ids and config, never clients).

    ``connectors`` are the agencies asked now (an officer's trace may ask fewer);
    ``enabled_connectors`` every agency this deployment enables: the rulebook waits for all
    of them, whatever one trace asked (empty: the same as ``connectors``).
    ``official_connectors`` are the enabled ones answering from official records.
    """

    db_url: str
    connectors: tuple[str, ...]
    today: date
    run_id: str
    channel: str = "file"
    #: This LA's code, duty inbox and name (CME_HOME_LA, CME_DUTY_INBOX, CME_LA_NAME): no
    #: defaults, so they can only come from the settings (flows/_config.py).
    home_la: str = field(kw_only=True)
    min_rounds: int = 3
    duty_inbox: str = field(kw_only=True)
    la_name: str = field(kw_only=True)
    other_la_contacts: dict[str, str] = field(default_factory=dict)
    sandbox_world: str | None = None
    agency_environment: str | None = None
    enabled_connectors: tuple[str, ...] = ()
    official_connectors: tuple[str, ...] = ()
    automatic_outcomes: tuple[str, ...] = tuple(sorted(policy.AUTOMATIC_OUTCOMES))
    match_threshold: float = policy.DEFAULT_MATCH_THRESHOLD

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(self.enabled_connectors or self.connectors)


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


def _environment(cfg: TraceConfig) -> AgencyEnvironment | None:
    return environment(cfg.agency_environment, cfg.sandbox_world)


def _connector(name: str, run_id: str, env: AgencyEnvironment | None = None) -> Connector:
    # One instance per connector per run in this process, so its circuit breaker and rate
    # limiter see the whole night, not one chunk.
    key = (name, run_id)
    if key not in _CONNECTORS:
        for old in [k for k in _CONNECTORS if k[0] == name]:
            del _CONNECTORS[old]
        _CONNECTORS[key] = load_enabled([name], settings=connector_overrides(env, name))[0]
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


def trace_subject(db_url: str, reference: str) -> TraceSubject | None:
    """The subject the night would trace for the referral ``reference`` (None: no such
    referral). For ``cme connectors check --reference``."""
    with Session(get_engine(db_url)) as s:
        row = s.exec(
            select(Referral, Child, School)
            .join(Child, col(Child.id) == Referral.child_id)
            .join(School, col(School.id) == Referral.school_id)
            .where(Referral.mendix_reference == reference)
        ).first()
    return _subject(*row) if row is not None else None


def wired_connector(name: str, today: date, *, agency_environment: str | None,
                    sandbox_world: str | None
                    ) -> tuple[Connector, httpx.AsyncBaseTransport | None]:
    """Connector ``name`` wired as the night wires it: the agency environment's settings and
    transport if it serves the connector, else its own ``CME_<NAME>_*`` settings and real
    HTTP (None)."""
    env = environment(agency_environment, sandbox_world)
    (connector,) = load_enabled([name], settings=connector_overrides(env, name))
    return connector, agency_transport(env, name, today)


def _failed_poll(chk: Check) -> bool:
    """A poll of a filed enquiry that failed (only polls carry the agency's reference on an
    error): ask about the same enquiry again. Only a 4xx — the agency does not know the
    reference — means the request must be filed (and the child's details sent) again."""
    return chk.outcome is CheckOutcome.ERROR and not (chk.error_code or "").startswith("http_4")


def _check_row(o: ConnectorOutcome, referral_id: int, round_: int, cfg: TraceConfig
               ) -> dict[str, Any]:
    res = o.result
    return {
        "referral_id": referral_id,
        "connector": o.connector,
        "connector_version": o.connector_version,
        "round": round_,
        "run_id": cfg.run_id,
        "traced_on": cfg.today,
        "fields_disclosed": list(o.disclosed_fields),
        "outcome": CheckOutcome(res.outcome.value),
        "evidence": CheckEvidence.column(res.evidence),
        "agency_reference": res.agency_reference,
        "expected_by": res.expected_by,
        "error_kind": res.error_kind,
        "error_code": res.error_code,
        "checked_at": o.checked_at,
    }


def _load_chunk(db_url: str, connector_name: str, deferred: bool,
                referral_ids: Sequence[int]) -> tuple[list[Any], dict[int | None, int], set[int],
                                                      dict[int, Check]]:
    """A chunk's referrals with their child and school, each one's round, those this agency
    has answered in it already, and (for a deferred agency) each one's latest check."""
    with Session(get_engine(db_url), expire_on_commit=False) as s:
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
        if deferred:
            for chk in s.exec(
                select(Check).where(col(Check.referral_id).in_(list(referral_ids)),
                                    Check.connector == connector_name)
                .order_by(col(Check.round))
            ):
                previous[chk.referral_id] = chk  # the latest round wins
            # A reopened case is traced afresh (README, *A case's life*): an answer or an
            # enquiry from before the reopening describes where the child was then, so it
            # is neither carried into this round nor polled; the agency is asked again.
            reopened: dict[int, datetime] = {}
            for rid, at in s.exec(
                select(CaseEvent.referral_id, CaseEvent.at).where(
                    col(CaseEvent.referral_id).in_(list(previous)),
                    CaseEvent.kind == "reopened")
            ):
                reopened[rid] = max(at, reopened.get(rid, at))
            for rid, at in reopened.items():
                chk = previous[rid]
                if chk.checked_at <= at:
                    del previous[rid]
    return list(rows), rounds, done, previous


async def trace_referrals(connector_name: str, referral_ids: Sequence[int], cfg: TraceConfig,
                          *, transport: httpx.AsyncBaseTransport | None = None) -> ChunkReport:
    """Ask one agency about these referrals (this round) and record every answer."""
    report = ChunkReport(connector=connector_name)
    if not referral_ids:
        return report
    env = _environment(cfg)
    connector = _connector(connector_name, cfg.run_id, env)
    # The database work runs in a thread, so the other agencies' requests in flight on this
    # event loop are not held up while a chunk is read or written (a SQLite commit waits
    # for the disk).
    rows, rounds, done, previous = await asyncio.to_thread(
        _load_chunk, cfg.db_url, connector_name, connector.deferred, referral_ids)
    todo = [(r, c, sc) for r, c, sc in rows if r.id not in done]
    report.skipped_already_checked = len(rows) - len(todo)
    by_ref = {r.mendix_reference: r for r, _, _ in todo}
    if transport is None:
        transport = agency_transport(env, connector_name, cfg.today)

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
                # without asking again (nothing disclosed). An answer whose stored evidence
                # does not read is carried as an error, so the next round asks about the
                # same enquiry again instead of deciding on what cannot be read.
                stored = CheckEvidence.read(prev.evidence)
                carried.append({
                    "referral_id": r.id, "connector": connector_name,
                    "connector_version": prev.connector_version, "round": rounds[r.id],
                    "run_id": cfg.run_id, "traced_on": cfg.today, "fields_disclosed": [],
                    "outcome": prev.outcome if stored.readable else CheckOutcome.ERROR,
                    "evidence": CheckEvidence.column(stored.items),
                    "agency_reference": prev.agency_reference,
                    "expected_by": prev.expected_by,
                    "error_kind": None if stored.readable else "permanent",
                    "error_code": None if stored.readable else UNREADABLE_EVIDENCE,
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
                   rounds[by_ref[o.subject_reference].id], cfg)
        for o in outcomes
    ] + carried
    await asyncio.to_thread(_write_checks, check_rows, cfg, report)
    report.asked = len(outcomes)
    for row in check_rows:
        report.outcomes[str(row["outcome"].value if hasattr(row["outcome"], "value")
                            else row["outcome"])] += 1
    for o in outcomes:
        report.http_calls += o.http_calls
        if o.result.error_code:
            report.errors[f"{o.result.error_kind}/{o.result.error_code}"] += 1
    return report


def _write_checks(check_rows: list[dict[str, Any]], cfg: TraceConfig,
                  report: ChunkReport) -> None:
    with session_scope(cfg.db_url) as s:
        new = insert_ignoring_duplicates(s, Check.__table__, check_rows)  # type: ignore[attr-defined]
        if new < len(check_rows):
            _record_unrecorded_requests(s, check_rows, cfg, report)


def _record_unrecorded_requests(s: Session, rows: Sequence[dict[str, Any]], cfg: TraceConfig,
                                report: ChunkReport) -> None:
    """A request went out whose check row another run had already written for the same
    (referral, agency, round): the round is claimed before asking (models/locks.py), so this
    only happens when a claim was lost; the request is still recorded, on the case's
    timeline, so the disclosure audit never misses what left the LA."""
    by_key = {(r["referral_id"], r["round"]): r for r in rows if r["fields_disclosed"]}
    if not by_key:
        return
    kept = {(rid, rnd) for rid, rnd in s.exec(
        select(Check.referral_id, Check.round).where(
            col(Check.referral_id).in_([k[0] for k in by_key]),
            Check.connector == rows[0]["connector"], Check.run_id == cfg.run_id))}
    for (rid, rnd), row in sorted(by_key.items()):
        if (rid, rnd) in kept:
            continue
        report.errors["request_not_first_in_round"] += 1
        event(s, rid, "disclosure",
              f"{row['connector']} was asked again in round {rnd} by run {cfg.run_id} "
              f"(fields sent: {', '.join(row['fields_disclosed'])}); another run had "
              "already recorded this round's answer")


@task(name="trace-chunk", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="trace-{connector_name}-chunk-{chunk_no}")
async def trace_chunk(connector_name: str, referral_ids: list[int], cfg: TraceConfig,
                      chunk_no: int = 0) -> ChunkReport:
    """Prefect task: one connector × one chunk of referrals (ids only cross the boundary)."""
    return await trace_referrals(connector_name, referral_ids, cfg)


# --- deciding --------------------------------------------------------------------------


def policy_results(chk: Check, official: frozenset[str]) -> tuple[policy.CheckResult, ...]:
    """A recorded check as the rulebook's results: every finding, read back through the
    typed :class:`connectors.CheckEvidence` model (none is dropped). A found answer whose
    stored evidence does not read is an error for the rulebook: it waits for that agency and
    decides nothing on it."""
    stored = CheckEvidence.read(chk.evidence)
    outcome = chk.outcome.value if stored.readable else policy.CheckOutcome.ERROR
    return policy.results_from_evidence(
        chk.connector, outcome, stored.items, expected_by=chk.expected_by,
        official=chk.connector in official,
    )


def case_facts(r: Referral, school: School, all_checks: Sequence[Check], cfg: TraceConfig,
               concerns: Iterable[str] = ()) -> policy.CaseFacts:
    """The rulebook's facts for one case: counted rounds (policy.complete_rounds, less those
    an officer set aside), the sources of its recorded safeguarding ``concerns``, and what
    an officer confirmed or rejected."""
    answers = [policy.Answer(c.round, c.connector, c.outcome.value,
                             c.traced_on or policy.london_date(c.checked_at))
               for c in all_checks]
    counted = policy.complete_rounds(answers, cfg.enabled)
    return policy.CaseFacts(
        reference=r.mendix_reference, school_urn=school.urn,
        received=policy.london_date(r.received_at), safeguarding=r.safeguarding_concern,
        home_la=cfg.home_la, school_la=school.la_code,
        rounds=max(0, counted - r.rounds_set_aside), enabled_connectors=cfg.enabled,
        concerns=frozenset(concerns),
        confirmed_outcome=policy.CaseOutcome(r.confirmed_outcome.value)
        if r.confirmed_outcome else None,
        confirmed_findings=frozenset(r.confirmed_findings or ()),
        rejected_findings=frozenset(r.rejected_findings or ()),
    )


def latest_results(all_checks: Sequence[Check], cfg: TraceConfig) -> list[policy.CheckResult]:
    """Every finding of each connector's latest check (latest round wins): the enabled
    connectors', and any answer an officer recorded (whichever agency gave it)."""
    latest: dict[str, Check] = {}
    for c in sorted(all_checks, key=lambda c: (c.round, c.id or 0)):
        latest[c.connector] = c
    official = frozenset(cfg.official_connectors)
    return [res for name, c in latest.items()
            if name in cfg.enabled or c.connector_version == OFFICER_RECORDED
            for res in policy_results(c, official)]


def decide_referrals(referral_ids: Sequence[int], cfg: TraceConfig) -> DecideReport:
    """Apply ``policy.decide`` to each referral's latest answers; write status, events and
    the outbox rows in one transaction per chunk."""
    report = DecideReport()
    channel = NotificationChannel(cfg.channel)
    with session_scope(cfg.db_url) as s:
        rows = s.exec(
            select(Referral, Child, School)
            .join(Child, col(Child.id) == Referral.child_id)
            .join(School, col(School.id) == Referral.school_id)
            .where(col(Referral.id).in_(list(referral_ids)),
                   col(Referral.status).in_(TRACEABLE))
        ).all()
        checks: dict[int, list[Check]] = defaultdict(list)
        for chk in s.exec(
            select(Check).where(col(Check.referral_id).in_(list(referral_ids)))
            .order_by(col(Check.round), col(Check.id))
        ):
            checks[chk.referral_id].append(chk)
        concerns: dict[int, set[str]] = defaultdict(set)
        for rid_, source in s.exec(
            select(SafeguardingConcern.referral_id, SafeguardingConcern.source)
            .where(col(SafeguardingConcern.referral_id).in_(list(referral_ids)))
        ):
            concerns[rid_].add(source)
        for r, child, school in rows:
            rid = r.id or 0
            this_round = r.tracing_rounds + 1
            mine = checks.get(rid, [])
            if not any(c.round == this_round for c in mine):
                continue  # nothing asked this round (e.g. no connector ran): nothing to decide
            facts = case_facts(r, school, mine, cfg, concerns.get(rid, ()))
            d = policy.decide(facts, latest_results(mine, cfg), cfg.today,
                              min_rounds=cfg.min_rounds, automatic=cfg.automatic_outcomes,
                              match_threshold=cfg.match_threshold)
            r.tracing_rounds = this_round
            report.decided += 1
            report.statuses[str(d.status)] += 1
            report.rules[str(d.rule)] += 1
            report.notifications_queued += record_decision(
                s, r, child, school, d, cfg, channel, report=report,
                heading=f"Round {this_round}")
    return report


def record_decision(s: Session, r: Referral, child: Child, school: School, d: policy.Decision,
                    cfg: TraceConfig, channel: NotificationChannel, *, heading: str,
                    report: DecideReport | None = None, actor: str = "system",
                    transition: Transition = Transition.RECORD_DECISION) -> int:
    """Write a decision to the case (status, outcome, proposal, timeline) and take its
    actions; returns how many notifications were queued. Used by the nightly decision
    (``record_decision``) and by an officer's answer (``record_officer_answer``) alike; a
    status the graph does not allow is :class:`tasks.lifecycle.StatusChangeRefused`."""
    before = r.status
    change = f"{before.value} → {d.status}" if before.value != str(d.status) else \
        f"stays {d.status}"
    change_status(
        s, r, transition, to=d.status, rule=str(d.rule), actor=actor,
        line=("decision", f"{heading}: rule {d.rule}; {change}"
              + (f"; outcome {d.outcome}" if d.outcome else "")
              + (f"; proposed {d.proposed}, waiting for an officer's decision" if d.proposed
                 else "")))
    r.outcome = CaseOutcome(d.outcome) if d.outcome else None
    r.decision_rule = str(d.rule)
    r.next_check_due = policy.next_check_due(str(d.status), cfg.today)
    proposed = CaseOutcome(d.proposed) if d.proposed else None
    if proposed is not None and (proposed is not r.proposed_outcome
                                 or list(d.findings) != list(r.proposal_findings or [])):
        r.proposed_at = datetime.now(UTC)
    r.proposed_outcome = proposed
    r.proposal_findings = list(d.findings) if proposed else []
    if proposed is None:
        r.proposed_at = None
    return _act(s, r, child, school, d, cfg, channel, report or DecideReport())


def _act(s: Session, r: Referral, child: Child, school: School, d: policy.Decision,
         cfg: TraceConfig, channel: NotificationChannel, report: DecideReport) -> int:
    rid = r.id or 0
    ref = r.mendix_reference
    # The LA's name from the settings (CME_LA_NAME), not the templates' fallback.
    common = {"reference": ref, "initials": initials(child), "school_name": school.name,
              "la_name": cfg.la_name}
    queued = 0
    told_las = {a.la_code for a in d.actions
                if a.kind is policy.ActionKind.NOTIFY_OTHER_LA and a.la_code
                and a.la_code in cfg.other_la_contacts}
    for a in d.actions:
        kind = a.kind
        if kind is policy.ActionKind.NOTIFY_SCHOOL and d.outcome:
            other_la = next((x.la_code for x in d.actions
                             if x.kind is policy.ActionKind.NOTIFY_OTHER_LA), None)
            personalisation: dict[str, Any] = {**common, "outcome": str(d.outcome)}
            if other_la:
                personalisation["other_la_code"] = other_la
                personalisation["other_la_told"] = other_la in told_las
            queued += queue_message(
                s, referral_id=rid, template=Template.resolution, recipient=school.email,
                personalisation=personalisation,
                channel=channel, idempotency_key=keys.resolution(ref, d.outcome),
            )
        elif kind is policy.ActionKind.NOTIFY_OTHER_LA and a.la_code:
            contact = cfg.other_la_contacts.get(a.la_code)
            queued += queue_message(
                s, referral_id=rid, template=Template.inter_la,
                recipient=contact or cfg.duty_inbox,
                personalisation={"reference": ref, "initials": initials(child),
                                 "other_la_code": a.la_code, "la_name": cfg.la_name,
                                 "forward": contact is None},
                channel=channel, idempotency_key=keys.inter_la(ref, a.la_code),
            )
            if contact is None:
                event(s, rid, "inter_la_forward",
                      f"No CME team contact held for LA {a.la_code}: the message went to the "
                      "duty inbox to forward (add the LA to CME_OTHER_LA_CONTACTS)",
                      rule=str(d.rule))
        elif kind is policy.ActionKind.SAFEGUARDING_TASK:
            queued += raise_concern(s, r, a.connector or "school", cfg.duty_inbox, channel,
                                    round_=r.tracing_rounds, rule=str(d.rule))
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
                  "Joint deletion decision made with the school (9(1)(h)/(i))",
                  rule=str(d.rule))
        elif kind is policy.ActionKind.OFFICER_REVIEW:
            what = (f"confirm or reject the proposed {d.proposed} (decide-case)"
                    if d.proposed else "review this case")
            event(s, rid, "officer_review", f"An officer must {what}", rule=str(d.rule))
    return int(queued)


def raise_concern(s: Session, r: Referral, source: str, duty_inbox: str,
                  channel: NotificationChannel, *, round_: int | None = None,
                  rule: str = "safeguarding") -> int:
    """Record a safeguarding concern from ``source`` (``school`` or an agency) and send the
    duty inbox one task for it — once per concern, however often it is repeated. Returns 1
    if a task was queued now."""
    rid = r.id or 0
    new = insert_ignoring_duplicates(s, SafeguardingConcern.__table__,  # type: ignore[attr-defined]
                                     [{"referral_id": rid, "source": source, "round": round_,
                                       "raised_at": datetime.now(UTC)}])
    if not new:
        return 0
    who = "the referring school" if source == "school" else f"agency {source}"
    event(s, rid, "safeguarding",
          f"Safeguarding concern raised by {who}: a person must review this case now (IARF to "
          "Children's Services / police where appropriate)", rule=rule)
    # The school's concern keeps intake's key, so a school concern gets one task in all.
    key = keys.safeguarding(r.mendix_reference, source)
    return int(queue_message(
        s, referral_id=rid, template=Template.safeguarding_task, recipient=duty_inbox,
        personalisation={"reference": r.mendix_reference, "raised_by": source},
        channel=channel, idempotency_key=key,
    ))


@task(name="decide-chunk", cache_policy=NO_CACHE, persist_result=False,
      task_run_name="decide-chunk-{chunk_no}")
def decide_chunk(referral_ids: list[int], cfg: TraceConfig, chunk_no: int = 0) -> DecideReport:
    """Prefect task: decide one chunk (one transaction: status, events, outbox rows)."""
    return decide_referrals(referral_ids, cfg)
