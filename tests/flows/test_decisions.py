"""Issue 14, end to end: hand-made worlds whose right outcome was worked out from the guidance,
run through intake, the nightly flow and the officer's decide-case flow, against the
in-process sandbox agencies and a real database.

Each test names the point of the issue it pins; each failed on the main branch before it.
"""

from __future__ import annotations

import asyncio
import email
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flowkit import BUILTINS
from sqlmodel import Session, col, select

from models import (
    CaseEvent,
    CaseStatus,
    Notification,
    Referral,
    SafeguardingConcern,
    Template,
    get_engine,
)
from policy import london_date

# The officer's flows decide on the real London date, so the nights run from it too.
TODAY = london_date(datetime.now(UTC))


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def _child(n: int, **kw: Any) -> dict[str, Any]:
    from policy import upn_check_letter

    body = f"8501234{26:02d}{n:03d}"
    return {"id": f"W{n:05d}", "scenario": kw.pop("scenario", "hand"),
            "upn": upn_check_letter(body) + body, "forename": f"Testchild{chr(64 + n)}",
            "surname": f"Handmade{chr(64 + n)}", "dob": "2015-02-28", "sex": "F",
            "address_line": f"{n} Synthetic Row", "town": "Winchester", "postcode": "SO23 8UJ",
            "parent_surname": f"Handmade{chr(64 + n)}", **kw}


def _referral(c: dict[str, Any], ref: str, **kw: Any) -> dict[str, Any]:
    child = c
    rec: dict[str, Any] = {
        "mendix_reference": ref, "kind": "CME",
        "received_at": "2026-11-20T10:00:00+00:00",
        "school": {"urn": "116000", "name": "Test Primary", "la_code": "850",
                   "email": "office@school.example.org"},
        "child": {"upn": child["upn"], "forename": child["forename"],
                  "surname": child["surname"], "dob": child["dob"], "sex": child["sex"],
                  "address": {"line1": child["address_line"], "town": child["town"],
                              "postcode": child["postcode"]}},
        "parents": [{"name": f"Parent {child['parent_surname']}"}],
        "on_roll": False,
        "school_actions": [{"action": a, "date": "2026-11-18"} for a in
                           ("phone_parents", "email_letter_or_visit", "contact_other_schools",
                            "ask_peers")],
    }
    for key, value in kw.items():
        if key == "child":
            rec["child"].update(value)
        else:
            rec[key] = value
    return rec


class Hand:
    """A hand-made world wired in-process: write it, import it, run nights, read back."""

    def __init__(self, root: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.db_url, self.mp = root, db_url, monkeypatch
        self.children: list[dict[str, Any]] = []
        self.referrals: list[dict[str, Any]] = []

    def add(self, n: int, *, referral: dict[str, Any] | None = None, **child: Any) -> str:
        c = _child(n, **child)
        self.children.append(c)
        ref = f"CME-2026-{900000 + n}"
        self.referrals.append(_referral(c, ref, **(referral or {})))
        return ref

    def start(self, **settings: str) -> None:
        from sandbox import World, clear_sandboxes, write_generated

        world = World.model_validate({"today": TODAY.isoformat(), "no_match_after_days": 0,
                                      "children": self.children})
        paths = write_generated(world, self.referrals, self.root / "world")
        for key in list(os.environ):
            if key.startswith("CME_") and key != "CME_TEST_DATABASE_URL":
                self.mp.delenv(key)
        env = {"CME_DATABASE_URL": self.db_url, "CME_SANDBOX_WORLD": str(paths["world"]),
               "CME_CONNECTORS": BUILTINS, "CME_OUTBOX_DIR": str(self.root / "outbox"),
               "CME_NOTIFICATION_CHANNEL": "file", **settings}
        for key, value in env.items():
            self.mp.setenv(key, value)
        clear_sandboxes()
        from flows.intake import import_file

        _run(import_file(str(paths["referrals"])))

    def night(self, n: int = 0) -> dict[str, Any]:
        from flows.nightly import nightly_tracing

        return _run(nightly_tracing(today=TODAY + timedelta(days=n)))  # type: ignore[no-any-return]

    def case(self, ref: str) -> Referral:
        with Session(get_engine(self.db_url), expire_on_commit=False) as s:
            return s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()

    def notes(self, ref: str, template: Template | None = None) -> list[Notification]:
        with Session(get_engine(self.db_url)) as s:
            r = s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()
            q = select(Notification).where(Notification.referral_id == r.id)
            if template is not None:
                q = q.where(Notification.template == template)
            return list(s.exec(q.order_by(col(Notification.id))))

    def events(self, ref: str, kind: str | None = None) -> list[CaseEvent]:
        with Session(get_engine(self.db_url)) as s:
            r = s.exec(select(Referral).where(Referral.mendix_reference == ref)).one()
            q = select(CaseEvent).where(CaseEvent.referral_id == r.id)
            if kind:
                q = q.where(CaseEvent.kind == kind)
            return list(s.exec(q.order_by(col(CaseEvent.id))))

    def mail(self, match: Callable[[email.message.Message], bool]) -> list[str]:
        out = []
        for f in sorted((self.root / "outbox").glob("*.eml")):
            msg = email.message_from_bytes(f.read_bytes())
            if match(msg):
                payload = msg.get_payload(decode=True)
                out.append((msg["Subject"] or "") + "\n" + (
                    payload.decode() if isinstance(payload, bytes) else str(payload)))
        return out


@pytest.fixture
def hand(prefect_harness: None, clean_db: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Hand:
    return Hand(tmp_path, clean_db, monkeypatch)


def _decide(ref: str, decision: str, reason: str, **kw: Any) -> dict[str, Any]:
    from flows.adhoc import DecisionReason, OfficerDecision, decide_case

    return _run(decide_case(reference=ref, decision=OfficerDecision[decision],  # type: ignore[no-any-return]
                            reason=DecisionReason[reason], **kw))


# --- point 1 ------------------------------------------------------------------------------


def test_two_schools_from_one_agency_are_conflicting_evidence(hand: Hand) -> None:
    ref = hand.add(1, other_la=[
        {"la_code": "852", "kind": "on_roll", "school_urn": "125111", "since": "2026-11-01"},
        {"la_code": "936", "kind": "on_roll", "school_urn": "125222", "since": "2026-11-02"},
    ])
    hand.start()
    hand.night()
    r = hand.case(ref)
    assert (r.status, r.outcome and r.outcome.value) == (CaseStatus.NEEDS_REVIEW,
                                                          "conflicting_evidence")
    assert hand.notes(ref, Template.resolution) == []  # no letter saying "you may delete"


# --- points 8-9 and 11: a demographic match is a lead for an officer ----------------------


def test_a_match_on_names_and_birth_date_is_a_possible_match_until_an_officer_confirms(
        hand: Hand) -> None:
    # No UPN on the referral, so the other LA can only match on names and date of birth.
    ref = hand.add(2, referral={"child": {"upn": None}}, upn=None, other_la=[
        {"la_code": "936", "kind": "on_roll", "school_urn": "125111", "since": "2026-11-01"}])
    hand.start(CME_OTHER_LA_CONTACTS=json.dumps({"936": "cme@la936.example.org"}))
    hand.night()
    r = hand.case(ref)
    assert r.status is CaseStatus.NEEDS_REVIEW and r.outcome and r.outcome.value == "possible_match"
    assert r.proposed_outcome and r.proposed_outcome.value == "on_roll_elsewhere"
    assert r.proposal_findings and r.proposed_at is not None
    assert hand.notes(ref, Template.resolution) == []
    assert hand.notes(ref, Template.inter_la) == []  # nor does the other LA hear it is theirs

    out = _decide(ref, "confirm", "confirmed_with_agency")
    assert out["status"] == "located"
    r = hand.case(ref)
    assert r.confirmed_outcome and r.confirmed_outcome.value == "on_roll_elsewhere"
    assert [n.template for n in hand.notes(ref) if n.template in (
        Template.resolution, Template.inter_la)] == [Template.resolution, Template.inter_la]
    assert any("Officer's decision: confirm (reason: confirmed_with_agency)" in e.text
               for e in hand.events(ref, "officer_decision"))
    # The confirmation holds: a week later the same evidence keeps the case located.
    hand.night(7)
    assert hand.case(ref).status is CaseStatus.LOCATED


def test_a_rejected_possible_match_is_not_raised_again_by_the_same_evidence(hand: Hand) -> None:
    ref = hand.add(3, referral={"child": {"upn": None}}, upn=None, other_la=[
        {"la_code": "936", "kind": "resident", "address_line": "9 Far Away", "postcode": "GU1 1AA",
         "since": "2026-11-01"}])
    hand.start()
    hand.night()
    assert hand.case(ref).decision_rule == "possible_match"
    _decide(ref, "reject", "not_this_child")
    r = hand.case(ref)
    assert r.status is CaseStatus.TRACING and r.proposed_outcome is None
    assert r.rejected_findings
    hand.night(1)
    r = hand.case(ref)
    assert r.decision_rule != "possible_match" and r.proposed_outcome is None


def test_confirm_refuses_when_nothing_is_proposed(hand: Hand) -> None:
    from prefect.exceptions import FailedRun

    ref = hand.add(4)
    hand.start()
    with pytest.raises(FailedRun, match="Nothing is proposed"):
        _decide(ref, "confirm", "evidence_checked")


# --- points 10-11: the joint deletion decision is a person's --------------------------------


def test_no_joint_decision_letter_goes_until_an_officer_confirms_it(hand: Hand) -> None:
    ref = hand.add(5)  # nobody knows this child
    hand.start(CME_MIN_ROUNDS="2")
    for n in range(3):
        hand.night(n)
    r = hand.case(ref)
    # Night 1: DWP and Border Force pending, so no round counts; nights 2 and 3 count.
    assert r.status is CaseStatus.NEEDS_REVIEW
    assert r.proposed_outcome and r.proposed_outcome.value == "whereabouts_unknown"
    assert r.outcome is None
    assert hand.notes(ref, Template.resolution) == []
    assert not hand.events(ref, "recommendation")
    assert not hand.mail(lambda m: "whereabouts unknown" in (m["Subject"] or ""))

    out = _decide(ref, "confirm", "joint_decision_with_school")
    assert out["status"] == "whereabouts_unknown"
    letters = hand.mail(lambda m: "whereabouts unknown" in (m["Subject"] or ""))
    assert len(letters) == 1
    assert "joint decision" in letters[0] and "An officer of the" in letters[0]
    assert any("Joint deletion decision made" in e.text for e in hand.events(ref, "recommendation"))
    # It stands: the monthly re-check finds nothing new and sends nothing again.
    hand.night(40)
    assert hand.case(ref).status is CaseStatus.WHEREABOUTS_UNKNOWN
    assert len(hand.notes(ref, Template.resolution)) == 1


def test_rejecting_whereabouts_unknown_sets_the_rounds_so_far_aside(hand: Hand) -> None:
    ref = hand.add(6)
    hand.start(CME_MIN_ROUNDS="1")
    hand.night(0)
    hand.night(1)
    assert hand.case(ref).proposed_outcome is not None
    _decide(ref, "reject", "more_enquiries_needed")
    r = hand.case(ref)
    assert (r.status, r.rounds_set_aside) == (CaseStatus.TRACING, 1)
    hand.night(2)  # one more round with nothing: proposed again, not before
    assert hand.case(ref).proposed_outcome is not None


def test_another_outcome_needs_the_la_and_sends_its_letters(hand: Hand) -> None:
    from prefect.exceptions import FailedRun

    ref = hand.add(7)
    hand.start()
    hand.night()
    with pytest.raises(FailedRun, match="LA code"):
        _decide(ref, "resident_other_la", "confirmed_with_agency")
    out = _decide(ref, "resident_other_la", "confirmed_with_agency", la_code="936")
    assert out["status"] == "transferred"
    assert {n.template for n in hand.notes(ref)} >= {Template.resolution, Template.inter_la}


def test_an_outcome_outside_the_automatic_set_waits_for_an_officer(hand: Hand) -> None:
    ref = hand.add(8, other_la=[{"la_code": "936", "kind": "resident", "address_line": "9 Far",
                                 "postcode": "GU1 1AA", "since": "2026-11-01"}])
    hand.start(CME_AUTOMATIC_OUTCOMES="on_roll_elsewhere,left_uk")
    hand.night()
    r = hand.case(ref)
    assert r.status is CaseStatus.NEEDS_REVIEW and r.proposed_outcome is not None
    assert r.proposed_outcome.value == "resident_other_la"
    assert hand.notes(ref, Template.inter_la) == []


def test_whereabouts_unknown_cannot_be_made_automatic() -> None:
    from pydantic import ValidationError

    from flows.settings import Settings

    with pytest.raises(ValidationError, match="whereabouts_unknown cannot be automatic"):
        Settings(automatic_outcomes="on_roll_elsewhere,whereabouts_unknown")  # type: ignore[arg-type]


# --- point 7: inter-LA messages someone receives --------------------------------------------


def test_with_no_contact_the_duty_inbox_is_asked_to_forward_and_the_school_is_not_misled(
        hand: Hand) -> None:
    ref = hand.add(9, other_la=[{"la_code": "936", "kind": "resident", "address_line": "9 Far",
                                 "postcode": "GU1 1AA", "since": "2026-11-01"}])
    hand.start()
    hand.night()
    assert hand.case(ref).status is CaseStatus.TRANSFERRED
    (inter,) = hand.notes(ref, Template.inter_la)
    assert inter.recipient == "cme-duty@la.example.org" and inter.personalisation["forward"]
    forwarded = hand.mail(lambda m: (m["Subject"] or "").startswith("PLEASE FORWARD"))
    assert len(forwarded) == 1 and "LA 936" in forwarded[0]
    (letter,) = hand.mail(lambda m: "living in another local authority" in (m["Subject"] or ""))
    assert "passing the case to that authority" in letter and "written to" not in letter
    assert hand.events(ref, "inter_la_forward")


def test_with_a_contact_the_other_la_is_written_to_and_the_school_told_so(hand: Hand) -> None:
    ref = hand.add(10, other_la=[{"la_code": "936", "kind": "resident", "address_line": "9 Far",
                                  "postcode": "GU1 1AA", "since": "2026-11-01"}])
    hand.start(CME_OTHER_LA_CONTACTS=json.dumps({"936": "cme@la936.example.org"}))
    hand.night()
    (inter,) = hand.notes(ref, Template.inter_la)
    assert inter.recipient == "cme@la936.example.org" and not inter.personalisation["forward"]
    (letter,) = hand.mail(lambda m: "living in another local authority" in (m["Subject"] or ""))
    assert "written to that authority" in letter


# --- points 3-4: safeguarding goes to a person, once, and is shown truthfully ----------------


def test_a_concern_on_a_not_cme_referral_stays_open_for_a_person(hand: Hand) -> None:
    ref = hand.add(11, referral={"education_otherwise": "ehe_suitable",
                                 "safeguarding_concern": True})
    hand.start()
    r = hand.case(ref)
    assert r.status is CaseStatus.ESCALATED and r.closed_at is None
    assert r.classification == "NOT_CME" and r.next_check_due is None  # never traced
    templates = [n.template for n in hand.notes(ref)]
    assert Template.not_cme_signpost in templates and Template.safeguarding_task in templates
    hand.night()
    assert hand.case(ref).status is CaseStatus.ESCALATED


def test_a_schools_concern_gets_one_task_not_a_second_on_night_one(hand: Hand) -> None:
    ref = hand.add(12, referral={"safeguarding_concern": True})
    hand.start()
    hand.night(0)
    hand.night(1)
    assert len(hand.notes(ref, Template.safeguarding_task)) == 1
    with Session(get_engine(hand.db_url)) as s:
        sources = s.exec(select(SafeguardingConcern.source)).all()
    assert sources == ["school"]


def test_an_agencys_concern_is_shown_with_its_name_and_stays_after_the_agency_goes_quiet(
        hand: Hand) -> None:
    from tasks.reports import case_detail

    ref = hand.add(13, other_la=[{"la_code": "936", "kind": "resident", "address_line": "9 Far",
                                  "postcode": "GU1 1AA", "since": "2026-11-01",
                                  "safeguarding": True}])
    hand.start()
    hand.night()
    d = case_detail(hand.db_url, ref, today=TODAY)
    assert d.status == "escalated" and d.safeguarding_concern
    assert "raised by agency other_la" in d.safeguarding and "a person must act" in d.safeguarding
    (task,) = hand.notes(ref, Template.safeguarding_task)
    assert task.personalisation["raised_by"] == "other_la"
    assert any("raised by agency other_la" in e.text for e in hand.events(ref, "safeguarding"))

    from flows.adhoc import close_case
    from models import ClosureReason

    _run(close_case(reference=ref, reason=ClosureReason.other, note="IARF sent"))
    d = case_detail(hand.db_url, ref, today=TODAY)
    assert "a person must act" not in d.safeguarding
    assert "Closed by an officer" in d.safeguarding


# --- points 2 and 5: classification --------------------------------------------------------


def test_a_year_7_pupil_who_never_arrives_on_the_first_day_is_pmooe(hand: Hand) -> None:
    # 2026/27 starts Wed 2 Sep 2026 (flows/data/hampshire_terms.json); aged 11 on 31 Aug 2026.
    marks = [{"date": "2026-09-02", "session": s, "code": "O"} for s in ("AM", "PM")]
    ref = hand.add(14, dob="2015-03-10", referral={
        "kind": "PMOOE", "on_roll": True, "attendance": marks,
        "received_at": "2026-09-10T10:00:00+01:00", "child": {"dob": "2015-03-10"}})
    hand.start()
    r = hand.case(ref)
    assert (r.classification, r.classification_reason) == ("PMOOE", "pmooe_transition_no_show")
    assert r.status is not CaseStatus.CLOSED


def test_a_year_5_pupil_with_the_same_marks_is_not_a_transition_no_show(hand: Hand) -> None:
    marks = [{"date": "2026-09-02", "session": s, "code": "O"} for s in ("AM", "PM")]
    ref = hand.add(15, dob="2017-03-10", referral={
        "kind": "PMOOE", "on_roll": True, "attendance": marks,
        "received_at": "2026-09-10T10:00:00+01:00", "child": {"dob": "2017-03-10"}})
    hand.start()
    assert hand.case(ref).classification_reason == "on_roll"


def test_school_age_is_judged_on_the_london_date(hand: Hand) -> None:
    # Turns 16 in 2025/26, so compulsory school age ends on Friday 26 June 2026. Received at
    # 00:30 on 27 June in a +02:00 offset: 23:30 on 26 June in London, still of school age.
    ref = hand.add(16, dob="2010-05-01", referral={
        "received_at": "2026-06-27T00:30:00+02:00", "child": {"dob": "2010-05-01"}})
    hand.start()
    r = hand.case(ref)
    assert (r.classification, r.classification_reason) == ("CME", "not_registered")


# --- point 6 (and issue 18, point 8): a narrow or repeated trace is not a round ------------


def test_an_officers_narrow_or_repeated_trace_is_not_a_round(hand: Hand) -> None:
    """Issue 18, point 8: ``trace-referral`` of the LPD alone, three times in a minute, once
    made a case whereabouts unknown and mailed the school that it may delete the pupil."""
    import time

    from flows.adhoc import trace_referral
    from policy import Answer, complete_rounds

    ref = hand.add(17)
    # One counted round would be enough to propose "whereabouts unknown": if a narrow trace
    # counted, or narrowed the agencies waited for, the first one would propose it.
    hand.start(CME_MIN_ROUNDS="1")
    started = time.monotonic()
    for _ in range(3):
        state = _run(trace_referral(reference=ref, connectors=["lpd"], return_state=True))
        assert state.is_completed(), state
        r = hand.case(ref)
        assert (r.status, r.decision_rule, r.proposed_outcome) == (
            CaseStatus.TRACING, "keep_tracing", None)
    assert time.monotonic() - started < 60  # three traces in a minute
    with Session(get_engine(hand.db_url)) as s:
        from models import Check

        checks = list(s.exec(select(Check).where(Check.referral_id == hand.case(ref).id)))
    assert {c.connector for c in checks} == {"lpd"} and len(checks) == 3
    assert all(c.outcome.value == "not_found" for c in checks)  # final answers, no finding
    # Counted against every enabled agency (the rulebook waits for all five): no round.
    enabled = frozenset(BUILTINS.split(","))
    assert complete_rounds([Answer(c.round, c.connector, c.outcome.value,
                                   c.traced_on or TODAY) for c in checks], enabled) == 0
    # Nothing went to the school or anyone else but the referral's acknowledgement.
    sent = {n.template for n in hand.notes(ref)}
    assert sent <= {Template.acknowledgement, Template.missing_school_actions}, sent
    assert not hand.events(ref, "officer_review")
    assert not hand.mail(lambda m: "whereabouts unknown" in (m["Subject"] or "").lower())

    # The rulebook still waits for every agency: the night asks all five, DWP and Border
    # Force answer the next day, and only that full round counts.
    hand.night(1)
    assert hand.case(ref).proposed_outcome is None
    hand.night(2)
    r = hand.case(ref)
    assert r.proposed_outcome is not None and r.proposed_outcome.value == "whereabouts_unknown"
    assert not hand.notes(ref, Template.resolution)  # proposed to an officer, never sent


def test_full_traces_repeated_on_one_day_are_one_round(hand: Hand) -> None:
    from flows.adhoc import trace_referral

    ref = hand.add(18)
    hand.start(CME_MIN_ROUNDS="2")
    for _ in range(3):  # full traces on one day (DWP and Border Force answer on the 2nd)
        _run(trace_referral(reference=ref))
    r = hand.case(ref)
    assert r.proposed_outcome is None and r.decision_rule == "keep_tracing"
    hand.night(1)  # the next day's round is the second that counts
    assert hand.case(ref).proposed_outcome is not None


# --- issue 15: the worklist -------------------------------------------------------------


def test_the_worklist_puts_every_case_that_needs_a_person_first_things_first(
        hand: Hand) -> None:
    from tasks.worklist import Why, build_worklist

    concern = hand.add(20, referral={"safeguarding_concern": True})
    unknown = hand.add(21)
    possible = hand.add(22, referral={"child": {"upn": None}}, upn=None, other_la=[
        {"la_code": "936", "kind": "on_roll", "school_urn": "125111", "since": "2026-11-01"}])
    conflict = hand.add(23, other_la=[
        {"la_code": "852", "kind": "on_roll", "school_urn": "125111", "since": "2026-11-01"},
        {"la_code": "936", "kind": "on_roll", "school_urn": "125222", "since": "2026-11-02"}])
    hand.referrals.append({"mendix_reference": "CME-2026-999999", "kind": "CME"})  # broken
    hand.start(CME_MIN_ROUNDS="2")
    for n in range(3):
        hand.night(n)
    # The hand-made schools are not on a schools list: their contacts are unverified, a
    # line each (tests/flows/test_whole_under_misuse.py); the cases are what this test is about.
    items = [i for i in build_worklist(hand.db_url, TODAY + timedelta(days=2))
             if i.why is not Why.school_contact_unverified]
    by_ref = {i.reference: i for i in items}
    assert by_ref[concern].why is Why.safeguarding
    assert by_ref[unknown].why is Why.decision_proposed
    assert "whereabouts_unknown" in by_ref[unknown].detail
    assert "joint deletion decision" in by_ref[unknown].next_step
    assert by_ref[possible].why is Why.possible_match
    assert by_ref[conflict].why is Why.conflicting_evidence
    assert by_ref["CME-2026-999999"].why is Why.quarantined
    # Most urgent first.
    ranks = [i.urgency for i in items]
    assert ranks == sorted(ranks) and items[0].why is Why.safeguarding
    # References and codes only: nothing about who the children are.
    text = repr(items)
    for c in hand.children:
        for value in (c["forename"], c["surname"], c["dob"], c["postcode"], c["address_line"],
                      c["upn"]):
            if value:
                assert str(value) not in text


def test_the_worklist_read_a_page_of_cases_at_a_time_is_the_same_worklist(
        hand: Hand, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the worklist reads open cases a page at a time (the county's checks at once
    held hundreds of MB at the end of a night). Pages of one or two cases give the same
    list, item for item and in the same order, as one page for all."""
    import tasks.worklist as wl

    hand.add(30, referral={"safeguarding_concern": True})
    hand.add(31)
    hand.add(32, dwp={"address_line": "1 Far", "town": "Leeds", "postcode": "LS1 1AA",
                      "la_code": "383", "recorded_on": "2026-11-01", "answer_after_days": 30})
    hand.add(33, other_la=[
        {"la_code": "852", "kind": "on_roll", "school_urn": "125111", "since": "2026-11-01"},
        {"la_code": "936", "kind": "on_roll", "school_urn": "125222", "since": "2026-11-02"}])
    hand.start(CME_MIN_ROUNDS="2")
    for n in range(3):
        hand.night(n)
    day = TODAY + timedelta(days=10)
    monkeypatch.setattr(wl, "CASE_PAGE", 10_000)
    whole = wl.build_worklist(hand.db_url, day)
    assert {i.why for i in whole} >= {wl.Why.safeguarding, wl.Why.deferred_overdue}
    for size in (1, 2):
        monkeypatch.setattr(wl, "CASE_PAGE", size)
        assert wl.build_worklist(hand.db_url, day) == whole


def test_an_overdue_deferred_reply_is_on_the_worklist_with_the_agencys_reference(
        hand: Hand) -> None:
    from tasks.worklist import Why, build_worklist

    ref = hand.add(24, dwp={"address_line": "1 Far", "town": "Leeds", "postcode": "LS1 1AA",
                            "la_code": "383", "recorded_on": "2026-11-01",
                            "answer_after_days": 30})
    hand.start()
    hand.night()
    items = [i for i in build_worklist(hand.db_url, TODAY + timedelta(days=10))
             if i.reference == ref and i.why is Why.deferred_overdue]
    assert len(items) == 2  # DWP, and Border Force (no match yet either)
    dwp = next(i for i in items if "dwp" in i.detail)
    assert "DWP-" in dwp.detail and "Chase dwp" in dwp.next_step


def test_a_decision_on_the_worklist_leaves_it(hand: Hand) -> None:
    from tasks.worklist import Why, build_worklist

    def waiting() -> set[str | None]:
        return {i.reference for i in build_worklist(hand.db_url, TODAY)
                if i.why is not Why.school_contact_unverified}

    ref = hand.add(25)
    hand.start(CME_MIN_ROUNDS="1")
    hand.night(0)
    hand.night(1)
    assert ref in waiting()
    _decide(ref, "confirm", "joint_decision_with_school")
    assert ref not in waiting()
