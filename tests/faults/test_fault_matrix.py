"""The fault matrix: six nights of tracing over real HTTP against the sandbox on a loopback
port, with every agency meeting every fault kind (``faultkit.plan``): 30 % 5xx, 429 bursts
with Retry-After in seconds and as an HTTP-date, read timeouts, refused connections, broken
JSON and CTF XML, bodies cut short, and a night down. The run is made once per session by
the ``fault_run`` fixture (conftest.py); each test here pins one promise about it.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

from faultkit import (
    AGENCIES,
    DEAD_CALLS,
    ERROR_CODES,
    KINDS,
    RETRY_AFTER_DATE,
    RETRY_AFTER_SECONDS,
    CheckRow,
    Exchange,
    FaultRun,
    Night,
    whose,
)

OUTCOMES = {"found", "not_found", "pending", "error"}
DEFERRED = ("dwp", "border_force")
#: Statuses whose next check is the next day (README, ``next_check_due``).
NEXT_DAY = {"received", "acknowledged", "tracing", "awaiting_response", "escalated"}
KIND_OF_CODE = {"http_500": "transient", "http_502": "transient", "http_503": "transient",
                "http_504": "transient", "timeout": "transient", "connection_error": "transient",
                "rate_limited": "transient", "malformed_response": "permanent",
                "circuit_open": "circuit_open"}


def _rows(night: Night, reference: str, connector: str) -> list[CheckRow]:
    return [c for c in night.checks if c.reference == reference and c.connector == connector]


def test_every_night_finishes_with_one_result_per_connector_for_every_due_referral(
        fault_run: FaultRun) -> None:
    run_ids: set[str | None] = set()
    for night in fault_run.nights:
        n = night.number
        assert night.state == "COMPLETED", f"night {n} did not finish: {night.state}"
        due = night.due()
        assert due, f"night {n}: nothing was due"
        per = Counter((c.reference, c.connector) for c in night.checks)
        # none missing, none for a referral that was not due
        assert set(per) == {(ref, a) for ref in due for a in AGENCIES}, f"night {n}"
        # none doubled
        assert set(per.values()) == {1}, f"night {n}: {[k for k, v in per.items() if v > 1]}"
        for c in night.checks:
            assert c.outcome in OUTCOMES, (n, c)
            assert c.round == night.before[c.reference].rounds + 1, (n, c)
        for ref in due:
            assert night.after[ref].rounds == night.before[ref].rounds + 1, (n, ref)
        ids = {c.run_id for c in night.checks}
        assert len(ids) == 1 and None not in ids, f"night {n}: run ids {ids}"
        run_ids |= ids
    assert len(run_ids) == len(fault_run.nights)
    # On the first night that is every open referral (duplicates are traced as their case).
    first = fault_run.nights[0]
    open_cases = {ref for ref, c in first.before.items()
                  if c.status != "closed" and not c.duplicate}
    assert first.due() == open_cases


def test_each_fault_leaves_only_the_errors_it_can_cause(fault_run: FaultRun) -> None:
    for night in fault_run.nights:
        for agency, kinds in night.kinds.items():
            allowed: set[str] = set().union(*(ERROR_CODES[k] for k in kinds))
            errors = [c for c in night.checks_of(agency) if c.outcome == "error"]
            codes = Counter(c.error_code for c in errors)
            assert set(codes) <= allowed, (night.number, agency, kinds, dict(codes))
            for c in errors:
                assert c.error_code is not None
                assert c.error_kind == KIND_OF_CODE[c.error_code], (night.number, c)
    clean = fault_run.nights[-1]
    assert not any(clean.kinds.values())
    assert [c for c in clean.checks if c.outcome == "error"] == [], "errors on a clean night"


def _hits(night: Night, agency: str, kind: str) -> int:
    """How often ``kind`` actually struck ``agency`` on ``night`` (from the wire)."""
    ex: list[Exchange] = [e for e in night.exchanges if e.agency == agency]
    if kind == "5xx":
        return sum(e.status in (500, 502, 503) for e in ex)
    if kind == "malformed":
        return sum(e.malformed for e in ex)
    if kind == "429_seconds":
        return sum(e.status == 429 and (e.retry_after or "").isdigit() for e in ex)
    if kind == "429_http_date":
        return sum(e.status == 429 and bool(e.retry_after) and not e.retry_after.isdigit()
                   for e in ex if e.retry_after is not None)
    if kind == "timeout":
        return sum(e.status in (504, None) for e in ex)  # hung past the client's timeout
    if kind == "truncated":
        return sum(e.truncated for e in ex)
    if kind == "refused":
        # Checks that failed although the sandbox saw nothing of them (asserted by the
        # caller): refused, or stopped by the circuit the refusals opened. Fan-out
        # connectors end as circuit_open: their retries meet the circuit the first wave of
        # refusals opened.
        rows = night.checks_of(agency)
        if ex or not rows or any(c.outcome != "error" for c in rows):
            return 0
        return sum(c.error_code in ("connection_error", "circuit_open") for c in rows)
    assert kind == "outage"
    return sum(e.status == 503 for e in ex)


def test_every_agency_met_every_fault_kind(fault_run: FaultRun) -> None:
    hits: Counter[tuple[str, str]] = Counter()
    for night in fault_run.nights:
        for agency, kinds in night.kinds.items():
            for kind in kinds:
                hits[(agency, kind)] += _hits(night, agency, kind)
            if "refused" in kinds:
                assert not [e for e in night.exchanges if e.agency == agency], \
                    f"night {night.number}: a refused {agency} was reached"
    missing = [(a, k) for a in AGENCIES for k in KINDS if hits[(a, k)] == 0]
    assert missing == [], f"never exercised: {missing}; hits: {dict(hits)}"
    # The Lost Pupil Database's own format was broken too, not only with JSON junk.
    corrupted = Counter(e.corrupted for n in fault_run.nights for e in n.exchanges
                        if e.agency == "lpd" and e.corrupted)
    assert sum(corrupted.values()) > 0, "no CTF XML answer was corrupted"
    # A read timeout ended some checks (not only retried ones).
    assert any(c.error_code == "timeout" for n in fault_run.nights for c in n.checks)


def test_a_broken_answer_is_never_taken_for_an_answer(fault_run: FaultRun) -> None:
    """Broken JSON, and CTF XML cut short, miscounted, with an entity declaration or the
    wrong document: the check of that child ends as a permanent malformed_response error
    (agencies asked once per check; a fan-out check may still be found by another office)."""
    broken: Counter[str] = Counter()
    for night in fault_run.nights:
        checked = {c.reference for c in night.checks}
        people = {ref: fault_run.people[ref] for ref in checked}
        for e in night.exchanges:
            if e.agency not in ("lpd", *DEFERRED) or not e.malformed:
                continue
            if e.method == "GET":  # a poll: the enquiry's reference is the last path segment
                ref_of = e.path.rsplit("/", 1)[-1]
                rows = [c for c in night.checks_of(e.agency) if c.agency_reference == ref_of]
            else:
                (ref,) = whose(json.loads(e.body), people)
                rows = _rows(night, ref, e.agency)
            assert len(rows) == 1, (night.number, e.path)
            assert (rows[0].outcome, rows[0].error_kind, rows[0].error_code) == (
                "error", "permanent", "malformed_response"), (night.number, e.corrupted, rows[0])
            broken[e.corrupted or "json"] += 1
    assert broken["json"] > 0 and sum(broken.values()) > broken["json"], dict(broken)


def test_dead_agency_circuit_opens_within_n_calls_and_the_night_still_finishes(
        fault_run: FaultRun) -> None:
    dead_nights = 0
    for night in fault_run.nights:
        for agency in [a for a, k in night.kinds.items() if "outage" in k]:
            dead_nights += 1
            calls = [s for s in night.seen if s.agency == agency]
            assert len(calls) <= DEAD_CALLS, (
                f"night {night.number}: {agency} was down all night and still got "
                f"{len(calls)} calls (circuit should stop them after {DEAD_CALLS})")
            rows = night.checks_of(agency)
            asked = [r for r in rows if not (r.connector in DEFERRED and r.outcome != "error"
                                             and r.fields_disclosed == ())]
            assert asked and all(r.outcome == "error" for r in asked), night.number
            assert sum(r.error_code == "circuit_open" for r in asked) > 0, night.number
            assert night.state == "COMPLETED"
            assert any(c.outcome != "error" for c in night.checks if c.connector != agency), \
                f"night {night.number}: nobody answered while {agency} was down"
    assert dead_nights == len(AGENCIES)


def test_error_checks_are_retried_the_next_night(fault_run: FaultRun) -> None:
    retried = 0
    for night, nxt in zip(fault_run.nights, fault_run.nights[1:], strict=False):
        for c in night.checks:
            if c.outcome != "error":
                continue
            after = night.after[c.reference]
            # An error is never "not found": nobody is given up on while an agency failed.
            assert after.status != "whereabouts_unknown", (night.number, c)
            if after.status not in NEXT_DAY:
                continue  # another agency's answer decided the case (7-day re-check)
            assert after.next_check_due == night.today + timedelta(days=1), (night.number, c)
            again = _rows(nxt, c.reference, c.connector)
            assert len(again) == 1 and again[0].round == c.round + 1, (night.number, c)
            retried += 1
    assert retried > 0


def test_a_failed_poll_is_polled_again_not_filed_again(fault_run: FaultRun) -> None:
    """DWP and Border Force hold the formal request; a poll that failed for a reason other
    than the agency rejecting the reference must not file (and disclose) a second one."""
    checked = 0
    for night, nxt in zip(fault_run.nights, fault_run.nights[1:], strict=False):
        for c in night.checks:
            if (c.connector not in DEFERRED or c.outcome != "error" or not c.agency_reference
                    or (c.error_code or "").startswith("http_4")):
                continue
            again = _rows(nxt, c.reference, c.connector)
            if not again:
                continue
            (row,) = again
            assert row.fields_disclosed == (), (
                f"night {nxt.number}: {c.connector} enquiry {c.agency_reference} of "
                f"{c.reference} was filed again after a failed poll ({c.error_code})")
            assert row.agency_reference == c.agency_reference
            checked += 1
    assert checked > 0


def test_retry_after_is_honoured_in_seconds_and_as_an_http_date(fault_run: FaultRun) -> None:
    gaps: dict[str, list[float]] = {"seconds": [], "date": []}
    for night in fault_run.nights:
        ex = sorted(night.exchanges, key=lambda e: e.at)
        for i, e in enumerate(ex):
            if e.status != 429 or e.retry_after is None:
                continue
            retry = next((r for r in ex[i + 1:] if r.key == e.key), None)
            if retry is None:
                continue  # that was the last attempt
            gaps["seconds" if e.retry_after.isdigit() else "date"].append(retry.at - e.at)
    assert gaps["seconds"] and gaps["date"], {k: len(v) for k, v in gaps.items()}
    # Lower bounds only (a slow machine makes gaps longer, never shorter). The retry must
    # wait the header out; the backoff alone would retry within 0.06 s.
    assert min(gaps["seconds"]) >= RETRY_AFTER_SECONDS - 0.05
    # An HTTP-date has whole seconds: "now + 2 s" is at least 1 s away when it is read.
    assert min(gaps["date"]) >= RETRY_AFTER_DATE - 1 - 0.05


def test_run_summary_and_its_artifact_match_the_database(fault_run: FaultRun) -> None:
    for night in fault_run.nights:
        s, n = night.summary, night.number
        due = night.due()
        assert s["today"] == night.today.isoformat()
        assert s["selected"] == len(due) == s["decided"], n
        by_connector: dict[str, Counter[str]] = {}
        for c in night.checks:
            by_connector.setdefault(c.connector, Counter())[c.outcome] += 1
        assert s["checks_by_connector"] == {k: dict(v) for k, v in by_connector.items()}, n
        errors = Counter(f"{c.connector}: {c.error_kind}/{c.error_code}"
                         for c in night.checks if c.outcome == "error")
        assert s["errors"] == dict(errors), n
        assert s["statuses"] == dict(Counter(night.after[ref].status for ref in due)), n
        assert s["outbox"] == night.outbox, n
        assert s["pending_notifications"] == night.outbox.get("pending", 0), n
        assert s["task_runs"] == len(AGENCIES) + 2, n  # one chunk: 5 traces, decide, dispatch

        art = {(r["section"], r["name"]): r["count"] for r in night.artifact}
        assert art, f"night {n}: no nightly-summary artifact"
        expected = {("checks", f"{k} / {o}"): v for k, outs in by_connector.items()
                    for o, v in outs.items()}
        expected |= {("errors", k): v for k, v in errors.items()}
        expected |= {("cases decided", k): v
                     for k, v in Counter(night.after[ref].status for ref in due).items()}
        expected[("run", "referrals traced")] = len(due)
        expected[("run", "due, left to another run tracing them")] = 0  # one run at a time
        sections = {"checks", "errors", "cases decided", "run"}
        assert {k: v for k, v in art.items() if k[0] in sections} == expected, n
