"""Issue 18, points 1-3: different children are never merged, a message that cannot be queued
costs only itself, and a referral never changes a school's contact."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from test_intake_rules import rec

from models import (
    CaseEvent,
    CaseStatus,
    Child,
    Notification,
    NotificationStatus,
    Referral,
    School,
    get_engine,
)
from tasks.intake import IntakeConfig, ingest_records
from tasks.worklist import Why, build_worklist
from tests.la_configs import DUTY_INBOX, LA_NAME, intake_config

TODAY = date(2026, 12, 1)


def ingest(db: str, *records: dict[str, object], cfg: IntakeConfig | None = None):  # type: ignore[no-untyped-def]
    lines = [(i, json.dumps(r)) for i, r in enumerate(records, 1)]
    return ingest_records(lines, source="test.jsonl", cfg=cfg or intake_config(db_url=db))


def _by_ref(db: str) -> dict[str, Referral]:
    with Session(get_engine(db)) as s:
        return {r.mendix_reference: r for r in s.exec(select(Referral))}


def _events(db: str, kind: str) -> list[CaseEvent]:
    with Session(get_engine(db)) as s:
        return list(s.exec(select(CaseEvent).where(CaseEvent.kind == kind)))


# --- 1. Different children are never merged ---------------------------------------------

TWIN = "G80120000101A"  # a valid UPN other than BASE's H801200001001 (docs/guidance.md)


@pytest.mark.parametrize("second", [
    {"child.upn": TWIN, "child.forename": "Xanthe"},          # twins: their own UPNs
    {"child.upn": None, "child.forename": "Xanthe"},          # no UPN, another forename
    {"child.upn": None},                                      # no UPN, the same names
], ids=["different_upns", "no_upn_other_forename", "no_upn_same_names"])
def test_same_surname_and_birthday_without_the_same_upn_is_a_possible_duplicate_traced_both(
        clean_db: str, second: dict[str, object]) -> None:
    from tasks.tracing import select_due

    report = ingest(clean_db, rec(), rec(mendix_reference="CME-2026-900002", **second))
    assert (report.created, report.duplicates_linked, report.possible_duplicates) == (2, 0, 1)
    assert report.accounted == report.received == 2
    refs = _by_ref(clean_db)
    first, other = refs["CME-2026-900001"], refs["CME-2026-900002"]
    assert other.duplicate_of_id is None and other.status is not CaseStatus.CLOSED
    assert other.possible_duplicate_of_id == first.id
    # Both children are traced meanwhile.
    assert set(select_due(clean_db, TODAY)) == {first.id, other.id}
    with Session(get_engine(clean_db)) as s:
        child = s.get(Child, other.child_id)
        assert child is not None and child.id != first.child_id  # its details, stored
        assert child.forename == second.get("child.forename", "Zebedee")
        assert child.upn == second["child.upn"]
    # An officer sees it, by reference only (no names, no date of birth).
    items = [i for i in build_worklist(clean_db, TODAY) if i.why is Why.possible_duplicate]
    assert [(i.reference, "CME-2026-900001" in i.detail) for i in items] == [
        ("CME-2026-900002", True)]
    assert "Quillfeather" not in items[0].detail + items[0].next_step
    assert "2015" not in items[0].detail


def test_an_officer_settles_a_possible_duplicate_either_way(clean_db: str) -> None:
    from tasks.duplicates import DuplicateDecisionError, settle_possible_duplicate

    ingest(clean_db, rec(), rec(mendix_reference="CME-2026-900002", **{"child.upn": TWIN}),
           rec(mendix_reference="CME-2026-900003", **{"child.upn": None}))
    settle_possible_duplicate(clean_db, "CME-2026-900002", same_child=False)
    settle_possible_duplicate(clean_db, "CME-2026-900003", same_child=True)
    refs = _by_ref(clean_db)
    assert refs["CME-2026-900002"].status is not CaseStatus.CLOSED
    assert refs["CME-2026-900002"].possible_duplicate_of_id is None
    assert refs["CME-2026-900003"].status is CaseStatus.CLOSED
    assert refs["CME-2026-900003"].duplicate_of_id == refs["CME-2026-900001"].id
    assert not [i for i in build_worklist(clean_db, TODAY) if i.why is Why.possible_duplicate]
    with pytest.raises(DuplicateDecisionError):
        settle_possible_duplicate(clean_db, "CME-2026-900002", same_child=True)


# --- 2. A message that cannot be queued costs only itself ---------------------------------

def test_a_bad_address_in_the_chunk_config_fails_only_its_message(clean_db: str) -> None:
    """Reproduces the chunk rollback: one inter-LA case whose LA's contact is unusable used to
    raise in decide_referrals, undoing every decision of the chunk."""
    import policy
    from tasks.tracing import record_decision
    from tests.la_configs import trace_config

    ingest(clean_db, rec(), rec(mendix_reference="CME-2026-900002",
                                **{"child.upn": TWIN, "child.surname": "Other"}))
    cfg = trace_config(db_url=clean_db, connectors=("other_la",), today=TODAY, run_id="t",
                       other_la_contacts={"116": "CME Team <cme@la116.example.org>"})
    transferred = policy.Decision(
        status=policy.CaseStatus.TRANSFERRED, outcome=policy.CaseOutcome.RESIDENT_OTHER_LA,
        rule=policy.Rule.TRANSFERRED,
        actions=(policy.Action(kind=policy.ActionKind.NOTIFY_SCHOOL),
                 policy.Action(kind=policy.ActionKind.NOTIFY_OTHER_LA, la_code="116")))
    from models import NotificationChannel, session_scope

    with session_scope(clean_db) as s:  # one transaction, as a chunk's decision task is
        for r in s.exec(select(Referral)):
            child, school = s.get(Child, r.child_id), s.get(School, r.school_id)
            assert child is not None and school is not None
            record_decision(s, r, child, school, transferred, cfg, NotificationChannel.file,
                            heading="Round 1")
    refs = _by_ref(clean_db)
    assert {r.status for r in refs.values()} == {CaseStatus.TRANSFERRED}  # nothing rolled back
    with Session(get_engine(clean_db)) as s:
        notes = list(s.exec(select(Notification)))
    resolution = [n for n in notes if n.template.value == "resolution"]
    assert len(resolution) == 2 and all(n.status is NotificationStatus.pending for n in resolution)
    failed = [n for n in notes if n.template.value == "inter_la"]
    assert len(failed) == 2 and all(n.status is NotificationStatus.failed for n in failed)
    assert all(n.last_error and "recipient" in n.last_error for n in failed)
    assert len(_events(clean_db, "message_not_queued")) == 2
    items = [i for i in build_worklist(clean_db, TODAY) if i.why is Why.message_not_queued]
    assert sorted(i.reference or "" for i in items) == sorted(refs)
    # Fixed and decided again: the message is queued and leaves the worklist.
    good = trace_config(db_url=clean_db, connectors=("other_la",), today=TODAY, run_id="t2",
                        other_la_contacts={"116": "cme@la116.example.org"})
    with session_scope(clean_db) as s:
        for r in s.exec(select(Referral)):
            child, school = s.get(Child, r.child_id), s.get(School, r.school_id)
            assert child is not None and school is not None
            record_decision(s, r, child, school, transferred, good, NotificationChannel.file,
                            heading="Round 2")
    assert not [i for i in build_worklist(clean_db, TODAY) if i.why is Why.message_not_queued]


def test_a_bad_duty_inbox_never_quarantines_a_safeguarding_referral(clean_db: str) -> None:
    cfg = intake_config(db_url=clean_db, duty_inbox="CME Duty <cme-duty@la.example.org>")
    report = ingest(clean_db, rec(safeguarding_concern=True), cfg=cfg)
    assert (report.created, report.quarantined, report.safeguarding) == (1, 0, 1)
    r = _by_ref(clean_db)["CME-2026-900001"]
    assert r.status is CaseStatus.ESCALATED
    items = {i.why for i in build_worklist(clean_db, TODAY) if i.reference == r.mendix_reference}
    assert {Why.safeguarding, Why.message_not_queued} <= items


@pytest.mark.parametrize(("name", "value"), [
    ("CME_DUTY_INBOX", "CME Duty <cme-duty@la.example.org"),
    ("CME_DUTY_INBOX", "a@b.example.org, c@d.example.org"),
    ("CME_MAIL_FROM", "not-an-address"),
    ("CME_OTHER_LA_CONTACTS", '{"116": "two@la.example.org three@la.example.org"}'),
    ("CME_OTHER_LA_CONTACTS", '{"Portsmouth": "cme@la116.example.org"}'),
])
def test_address_settings_are_refused_at_load_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    from flows.settings import ConfigError, get_settings

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^setting {name} is invalid: .+") as err:
        get_settings()
    assert "\n" not in str(err.value)


def test_named_addresses_are_accepted_and_stored_bare(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.settings import get_settings

    monkeypatch.setenv("CME_DUTY_INBOX", "CME Duty <cme-duty@la.example.org>")
    monkeypatch.setenv("CME_OTHER_LA_CONTACTS",
                       '{"116": "Portsmouth CME <cme@la116.example.org>"}')
    s = get_settings()
    assert s.duty_inbox == "cme-duty@la.example.org"
    assert s.other_la_contacts == {"116": "cme@la116.example.org"}


# --- 3. A referral never changes a school's contact ----------------------------------------

def _school(db: str) -> School:
    with Session(get_engine(db)) as s:
        return s.exec(select(School)).one()


def test_a_referral_quoting_another_contact_is_recorded_and_flagged_not_applied(
        clean_db: str) -> None:
    ingest(clean_db, rec())
    forged = rec(mendix_reference="CME-2026-900002", **{"child.upn": TWIN,
                                                        "child.surname": "Other"})
    forged["school"] = {**forged["school"], "email": "attacker@evil.example.com",  # type: ignore[dict-item]
                        "name": "Not The School"}
    ingest(clean_db, forged)
    school = _school(clean_db)
    assert (school.email, school.name) == ("office@school.example.org", "Test Primary")
    assert school.quoted_email == "attacker@evil.example.com"
    notes = [e for e in _events(clean_db, "school_contact") if "different" in e.text]
    assert len(notes) == 1 and "attacker@evil.example.com" in notes[0].text
    with Session(get_engine(clean_db)) as s:
        acks = list(s.exec(select(Notification.recipient)
                           .where(col(Notification.template) == "acknowledgement")))
    assert acks == ["office@school.example.org"] * 2  # the second ack goes to the held contact
    items = [i for i in build_worklist(clean_db, TODAY)
             if i.why is Why.school_contact_differs]
    assert [i.reference for i in items] == ["CME-2026-900002"]


def test_a_school_never_seen_uses_the_referral_contact_flagged_until_the_list_confirms(
        clean_db: str, tmp_path: Path) -> None:
    from tasks.schools import SchoolsFileError, import_schools, set_contact

    ingest(clean_db, rec())
    assert _school(clean_db).contact_source == "referral"
    whys = {i.why for i in build_worklist(clean_db, TODAY)}
    assert Why.school_contact_unverified in whys
    bad = tmp_path / "bad.csv"
    bad.write_text("urn,name,la_code,email\n116000,Test Primary,850,office@school.example.org\n"
                   "12,Broken,8500,nope\n", encoding="utf-8")
    with pytest.raises(SchoolsFileError, match="line 3"):
        import_schools(clean_db, bad)
    assert _school(clean_db).contact_source == "referral"  # all or nothing
    good = tmp_path / "schools.csv"
    good.write_text("urn,name,la_code,email\n"
                    "116000,Test Primary School,850,admin@school.example.org\n"
                    "116001,Another School,850,office@another.example.org\n", encoding="utf-8")
    done = import_schools(clean_db, good)
    assert (done.added, done.changed, done.unchanged) == (1, 1, 0)
    school = _school_by_urn(clean_db, "116000")
    assert (school.email, school.contact_source) == ("admin@school.example.org", "trusted")
    assert any("changed to admin@school.example.org" in e.text
               for e in _events(clean_db, "school_contact"))
    assert not {i.why for i in build_worklist(clean_db, TODAY)} & {
        Why.school_contact_unverified, Why.school_contact_differs}
    # A later referral from a listed school with another address changes nothing.
    ingest(clean_db, rec(mendix_reference="CME-2026-900003",
                         **{"child.upn": TWIN, "child.surname": "Other"}))
    assert _school_by_urn(clean_db, "116000").email == "admin@school.example.org"
    # An officer settles it.
    set_contact(clean_db, "116000", email=None, keep=True)
    assert not {i.why for i in build_worklist(clean_db, TODAY)} & {
        Why.school_contact_unverified, Why.school_contact_differs}
    set_contact(clean_db, "116000", email="head@school.example.org")
    school = _school_by_urn(clean_db, "116000")
    assert (school.email, school.contact_source) == ("head@school.example.org", "officer")


def _school_by_urn(db: str, urn: str) -> School:
    with Session(get_engine(db)) as s:
        return s.exec(select(School).where(School.urn == urn)).one()


def test_half_termly_updates_go_to_the_held_contact_not_the_last_referral(
        clean_db: str) -> None:
    from tasks.school_updates import queue_school_updates

    ingest(clean_db, rec())
    forged = rec(mendix_reference="CME-2026-900002", **{"child.upn": TWIN,
                                                        "child.surname": "Other"})
    forged["school"] = {**forged["school"], "email": "attacker@evil.example.com"}  # type: ignore[dict-item]
    ingest(clean_db, forged)
    queue_school_updates(clean_db, TODAY, channel="file", duty_inbox=DUTY_INBOX, la_name=LA_NAME)
    with Session(get_engine(clean_db)) as s:
        rows = list(s.exec(select(Notification.recipient).where(
            col(Notification.template) == "half_termly_update")))
    assert rows == ["office@school.example.org"]
