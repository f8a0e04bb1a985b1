"""Shared kit of the hostile-input tests: synthetic referrals, their mutations, junk lines,
and the checks that prove nothing is dropped.

Every generated input carries what a correct intake must do with it:

- ``accept``: a new case, an update, a linked duplicate, a kept not-CME referral or an
  unchanged re-send — never the quarantine table;
- ``reject``: the quarantine table, with a reason naming ``field`` (a dotted path, or
  ``(record)`` for a line that is not a referral at all);
- ``either``: what happens depends on the database (a NUL character is text to SQLite but
  not to PostgreSQL), so only the accounting is checked.

All people, schools and addresses are invented (names no real person is likely to have).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal

import pytest
from hypothesis import strategies as st
from sqlmodel import Session, SQLModel, select

from models import Child, QuarantinedRecord, Referral, get_engine
from policy import UPN_ALPHABET, upn_check_letter
from tasks.import_files import EXCERPT_BYTES
from tasks.intake import MAX_RECORD_BYTES, IntakeReport

Expect = Literal["accept", "reject", "either"]

TODAY = date(2026, 11, 28)

# --- deep runs ------------------------------------------------------------------------------


def deep_requested(config: pytest.Config) -> bool:
    """True when the long fuzzing runs were asked for: ``-m deep`` or ``CME_DEEP=1``.

    The ``deep`` marker alone does not deselect anything (``pyproject.toml`` has no
    ``-m "not deep"``), so the deep tests skip themselves unless asked.
    """
    if os.environ.get("CME_DEEP", "") == "1":
        return True
    expr = str(config.getoption("markexpr", "") or "")
    return bool(re.search(r"\bdeep\b", expr)) and not re.search(r"\bnot\s+deep\b", expr)


def skip_unless_deep(config: pytest.Config) -> None:
    if not deep_requested(config):
        pytest.skip("deep fuzzing runs on demand: pytest -m deep, or CME_DEEP=1")


# --- the database ---------------------------------------------------------------------------


def reset_db(url: str) -> None:
    """Empty every table (what ``clean_db`` does), for a fresh database per example."""
    import models.tables  # noqa: F401

    with get_engine(url).begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.execute(table.delete())


# --- synthetic world ------------------------------------------------------------------------

FORENAMES = ("Zebedee", "Quillonia", "Marmaduke", "Ottoline", "Peregrine", "Wilhelmina",
             "Barnabus", "Clementhorpe")
SURNAMES = ("Quillfeather", "Brackenthwaite", "Fennimoreton", "Ostrevanney", "Wobblethorpe",
            "Snickersnee")
PARENT_NAMES = ("Hortensia Quillfeather", "Algernon Brackenthwaite", "Dymphna Ostrevanney")
STREETS = ("Synthetic Row", "Imaginary Lane", "Fictional Close", "Pretend Parade")
PLACES = (("Winchester", "SO23 8UJ"), ("Portsmouth", "PO1 2AB"), ("Farnborough", "GU14 7JT"),
          ("Basingstoke", "RG21 4AH"), ("Eastleigh", "SO50 5AA"))
SCHOOLS = tuple(
    {"urn": f"11600{n}", "name": f"Fuzzbury Test Primary {n}", "la_code": la,
     "email": f"office{n}@fuzzbury-school.example.org"}
    for n, la in ((1, "850"), (2, "850"), (3, "852"), (4, "850"))
)
ACTIONS = ("phone_parents", "email_letter_or_visit", "contact_other_schools", "ask_peers",
           "contact_agencies")
CODES = ("/", "\\", "L", "O", "G", "N", "U", "C", "E", "I", "M", "R", "X", "#", "Y1", "Z",
         "B", "D", "K", "V", "P", "W")
N_CHILDREN = 24
N_REFS = 40


def make_upn(n: int) -> str:
    """A valid UPN for synthetic child ``n`` (check letter computed, DfE algorithm)."""
    body = f"850{4000 + n:04d}25{n % 1000:03d}"
    return upn_check_letter(body) + body


def wrong_check_letter(upn: str) -> str:
    # Intake upper-cases a UPN before checking it, so the wrong letter must differ from the
    # right one in upper case: "a850..." must not become "A850...", which is valid.
    upn = upn.strip()
    return next(c for c in UPN_ALPHABET if c != upn[0].upper()) + upn[1:]


def child_identity(n: int) -> dict[str, Any]:
    """Synthetic child ``n``: the same ``n`` is the same child (for duplicate linking)."""
    return {
        "forename": FORENAMES[n % len(FORENAMES)],
        "surname": SURNAMES[n % len(SURNAMES)] + ("" if n < 12 else "-Fakeley"),
        "dob": date(2012, 3, 1) + timedelta(days=97 * n),
        "upn": make_upn(n),
    }


def reference(n: int, pool: str = "FZ") -> str:
    return f"CME-{pool}-{n:06d}"


@dataclass
class Generated:
    """One input line and what intake must do with it."""

    raw: str
    expect: Expect
    label: str
    field: str | None = None
    #: Personal values in the record that must never show in a quarantine reason.
    pii: tuple[str, ...] = ()

    @property
    def reference(self) -> str | None:
        """The Mendix reference as intake will store it (stripped), if the line has one."""
        try:
            data = json.loads(self.raw)
        except (ValueError, RecursionError):
            return None
        ref = data.get("mendix_reference") if isinstance(data, dict) else None
        return ref.strip() if isinstance(ref, str) else None


_TZS = (UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)),
        timezone(timedelta(hours=5, minutes=30)))


@st.composite
def valid_referral(draw: st.DrawFn, ref_pool: str = "FZ") -> dict[str, Any]:
    """A referral that intake must accept (as a new case, update, duplicate or not-CME)."""
    received_day = draw(st.dates(date(2025, 9, 1), TODAY - timedelta(days=1)))
    tz = draw(st.sampled_from(_TZS))
    received = datetime(received_day.year, received_day.month, received_day.day,
                        draw(st.integers(8, 17)), draw(st.integers(0, 59)), tzinfo=tz)
    who = draw(st.integers(0, N_CHILDREN - 1))
    ident = child_identity(who)
    town, postcode = draw(st.sampled_from(PLACES))
    child: dict[str, Any] = {
        "forename": ident["forename"],
        "surname": ident["surname"],
        "dob": ident["dob"].isoformat(),
        "address": {"line1": f"{draw(st.integers(1, 99))} {draw(st.sampled_from(STREETS))}",
                    "town": town, "postcode": postcode},
    }
    if draw(st.booleans()):
        child["upn"] = ident["upn"]
    if draw(st.booleans()):
        child["sex"] = draw(st.sampled_from(["F", "M", "U"]))
    if draw(st.integers(0, 3)) == 0:
        child["former_surnames"] = ["Oldfeather"]
    if draw(st.integers(0, 3)) == 0:
        child["nhs_number"] = "9434765919"
    kind = draw(st.sampled_from(["CME", "PMOOE"]))
    rec: dict[str, Any] = {
        "mendix_reference": reference(draw(st.integers(0, N_REFS - 1)), ref_pool),
        "kind": kind,
        "received_at": received.isoformat(),
        "school": dict(draw(st.sampled_from(SCHOOLS))),
        "child": child,
        "on_roll": draw(st.booleans()),
        "reason": draw(st.sampled_from(["", "Not seen since half-term",
                                        "Family believed to have moved away"])),
    }
    done = draw(st.lists(st.sampled_from(ACTIONS), unique=True, max_size=5))
    if done:
        rec["school_actions"] = [
            {"action": a, "date": (received_day - timedelta(days=3)).isoformat()} for a in done
        ]
    if draw(st.integers(0, 2)) == 0:
        rec["parents"] = [{"name": draw(st.sampled_from(PARENT_NAMES)),
                           "relationship": "parent", "phone": "07700 900123"}]
    if draw(st.booleans()):
        rec["last_attended"] = (received_day - timedelta(days=draw(st.integers(0, 60))))\
            .isoformat()
    for flag in ("reduced_hours", "medical_absence", "safeguarding_concern", "service_child"):
        if draw(st.integers(0, 5)) == 0:
            rec[flag] = True
    if draw(st.integers(0, 5)) == 0:
        rec["education_otherwise"] = draw(st.sampled_from(
            ["ehe_suitable", "ehe_unsuitable", "ehe_unassessed", "alternative_provision"]))
    if kind == "PMOOE" and draw(st.booleans()):
        days = draw(st.lists(st.integers(1, 40), unique=True, min_size=1, max_size=25))
        rec["attendance"] = [
            {"date": (received_day - timedelta(days=d)).isoformat(), "session": s,
             "code": draw(st.sampled_from(CODES))}
            for d in days for s in ("AM", "PM")
        ]
    if draw(st.integers(0, 4)) == 0:
        rec["changed_at"] = received.isoformat()
    return rec


def pii_of(rec: dict[str, Any]) -> tuple[str, ...]:
    """The personal values of ``rec`` (at least 4 characters) a reason must never repeat."""
    child = rec.get("child")
    if not isinstance(child, dict):
        return ()
    values: list[Any] = [child.get(k) for k in ("forename", "surname", "upn", "dob",
                                                 "nhs_number")]
    address = child.get("address")
    if isinstance(address, dict):
        values += [address.get("line1"), address.get("postcode")]
    for parent in rec.get("parents") or []:
        if isinstance(parent, dict):
            values += [parent.get("name"), parent.get("phone")]
    return tuple(v for v in values if isinstance(v, str) and len(v.strip()) >= 4)


# --- paths in nested records ----------------------------------------------------------------


def _walk(rec: Any, path: str) -> tuple[Any, str | int]:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = rec
    for p in parts[:-1]:
        node = node[p]
    return node, parts[-1]


def set_path(rec: dict[str, Any], path: str, value: Any) -> None:
    node, last = _walk(rec, path)
    node[last] = value


def del_path(rec: dict[str, Any], path: str) -> None:
    node, last = _walk(rec, path)
    del node[last]


# --- mutations ------------------------------------------------------------------------------
# A mutation turns a valid record into (record, expect, field, label). "Benign" ones keep the
# record valid; "harmful" ones make it invalid in one known place (or backend-dependent).

Mutation = tuple[dict[str, Any], Expect, str | None, str]

REQUIRED = ("mendix_reference", "kind", "received_at", "school", "child", "school.urn",
            "school.name", "school.la_code", "school.email", "child.forename",
            "child.surname", "child.dob")
LIMITS = (("reason", 2000), ("child.forename", 100), ("child.surname", 100),
          ("school.name", 200), ("child.address.line1", 200), ("child.address.town", 100))
DATE_FIELDS = ("child.dob", "received_at", "last_attended", "leave_end", "changed_at")
BAD_DATES = ("2015-02-30", "yesterday", "31/12/2015", "", "2015-13-01", "20150228x",
             [], {}, True, "2015-02-28T25:00:00+00:00")
UNICODE_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")
NAME_TEXT = st.text(
    alphabet=st.characters(categories=["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Pd", "Po"]),
    min_size=1, max_size=40,
).filter(lambda s: any(c.isalpha() for c in s))


@st.composite
def benign(draw: st.DrawFn, rec: dict[str, Any]) -> dict[str, Any]:
    """Changes a correct intake must take in its stride."""
    rec = copy.deepcopy(rec)
    for choice in draw(st.lists(st.integers(0, 6), max_size=3)):
        if choice == 0:  # names in any script, or starting with an apostrophe
            rec["child"]["forename"] = draw(NAME_TEXT)
            rec["child"]["surname"] = draw(st.one_of(NAME_TEXT, st.just("'t Hooftington")))
        elif choice == 1:  # surrounding whitespace on identifiers
            rec["mendix_reference"] = f"  {rec['mendix_reference']} "
            rec["school"]["urn"] = f" {rec['school']['urn']}\t"
        elif choice == 2:  # lower-case UPN, postcode without its space
            if rec["child"].get("upn"):
                rec["child"]["upn"] = rec["child"]["upn"].lower()
            postcode = rec["child"]["address"].get("postcode")
            if postcode:
                rec["child"]["address"]["postcode"] = postcode.replace(" ", "").lower()
        elif choice == 3:  # explicit nulls where null is allowed
            for path in ("child.upn", "last_attended", "education_otherwise", "leave_end",
                         "changed_at", "child.sex", "child.nhs_number",
                         "child.address.postcode", "child.address.town"):
                if draw(st.booleans()):
                    set_path(rec, path, None)
        elif choice == 4:  # strings exactly at their limits
            path, limit = draw(st.sampled_from(LIMITS))
            set_path(rec, path, "x" * limit)
        elif choice == 5:  # many former surnames (no limit on the list)
            rec["child"]["former_surnames"] = ["Oldname"] * draw(st.integers(50, 3000))
        elif choice == 6:  # booleans as the form may send them
            rec["on_roll"] = draw(st.sampled_from([True, False, "true", "false", 0, 1]))
    return rec


@st.composite
def harmful(draw: st.DrawFn, rec: dict[str, Any]) -> Mutation:
    """One defect in a known place."""
    rec = copy.deepcopy(rec)
    kind = draw(st.sampled_from([
        "bad_upn_check", "bad_upn_shape", "missing", "bad_date", "naive_received",
        "future_dob", "late_last_attended", "too_long", "too_big", "wrong_type", "null",
        "extra_field", "lone_surrogate", "nul_char", "foreign_digits", "bad_postcode",
        "bad_enum", "bad_attendance", "deep_value", "no_letter_name",
    ]))
    if kind == "bad_upn_check":
        upn = child_identity(0)["upn"] if not rec["child"].get("upn") else rec["child"]["upn"]
        rec["child"]["upn"] = wrong_check_letter(upn)
        return rec, "reject", "child.upn", kind
    if kind == "bad_upn_shape":
        rec["child"]["upn"] = draw(st.sampled_from(
            ["ABC", "H8012000010011", "I801200001001", "H80120000100S", "H80120O001001"]))
        return rec, "reject", "child.upn", kind
    if kind == "missing":
        path = draw(st.sampled_from(REQUIRED))
        del_path(rec, path)
        return rec, "reject", path, kind
    if kind == "bad_date":
        path = draw(st.sampled_from(DATE_FIELDS + ("school_actions.0.date",)))
        if path.startswith("school_actions"):
            rec["school_actions"] = [{"action": "phone_parents", "date": "2026-01-05"}]
        set_path(rec, path, draw(st.sampled_from(BAD_DATES)))
        return rec, "reject", path, kind
    if kind == "naive_received":
        rec["received_at"] = rec["received_at"][:19]
        return rec, "reject", "received_at", kind
    if kind == "future_dob":
        received = datetime.fromisoformat(rec["received_at"]).date()
        rec["child"]["dob"] = (received + timedelta(days=draw(st.integers(1, 4000))))\
            .isoformat()
        return rec, "reject", "child.dob", kind
    if kind == "late_last_attended":
        received = datetime.fromisoformat(rec["received_at"]).date()
        rec["last_attended"] = (received + timedelta(days=draw(st.integers(1, 400))))\
            .isoformat()
        return rec, "reject", "last_attended", kind
    if kind == "too_long":
        path, limit = draw(st.sampled_from(LIMITS))
        set_path(rec, path, "y" * (limit + draw(st.integers(1, 50_000))))
        return rec, "reject", path, kind
    if kind == "too_big":  # the whole line over the record cap
        rec["reason"] = "z" * (MAX_RECORD_BYTES + draw(st.integers(1, 100_000)))
        return rec, "reject", "(record)", kind
    if kind == "wrong_type":
        path, value = draw(st.sampled_from([
            ("mendix_reference", 123456), ("mendix_reference", ["CME-1"]),
            ("kind", 1), ("school", "Fuzzbury"), ("school", [1, 2]), ("child", "someone"),
            ("child.forename", 42), ("child.surname", {"a": 1}), ("school.urn", 116001),
            ("school.la_code", 850), ("reason", 3.5), ("reason", ["a"]),
            ("on_roll", "maybe"), ("on_roll", 2), ("safeguarding_concern", [True]),
            ("school_actions", "phoned"), ("school_actions", {"action": "x"}),
            ("parents", "mum"), ("attendance", 7), ("child.former_surnames", "Old"),
            ("child.address", "1 Synthetic Row"), ("child.sex", "Q"),
        ]))
        set_path(rec, path, value)
        return rec, "reject", path, kind
    if kind == "null":
        path = draw(st.sampled_from(REQUIRED))
        set_path(rec, path, None)
        return rec, "reject", path, kind
    if kind == "extra_field":
        path = draw(st.sampled_from(["internal_note", "child.favourite_colour",
                                     "school.ofsted_grade", "child.address.flat"]))
        set_path(rec, path, draw(st.sampled_from(["x", 1, None, [], {"a": "b"}])))
        return rec, "reject", path, kind
    if kind == "lone_surrogate":
        path = draw(st.sampled_from(["mendix_reference", "child.forename", "reason",
                                     "school.name", "child.address.town"]))
        set_path(rec, path, "Ab\ud800cd" if path != "reason" else "late \udfff")
        return rec, "reject", path, kind
    if kind == "nul_char":
        path = draw(st.sampled_from(["reason", "child.forename", "child.address.line1"]))
        set_path(rec, path, "Nul\x00Byte")
        return rec, "either", path, kind
    if kind == "foreign_digits":
        path = draw(st.sampled_from(["school.urn", "school.la_code", "child.nhs_number",
                                     "child.address.postcode"]))
        table = draw(st.sampled_from([UNICODE_DIGITS, FULLWIDTH_DIGITS]))
        current = {"child.nhs_number": "9434765919"}.get(path)
        node, last = _walk(rec, path)
        node[last] = (current or node[last] or "SO23 8UJ").translate(table)
        return rec, "reject", path, kind
    if kind == "bad_postcode":
        rec["child"]["address"]["postcode"] = draw(st.sampled_from(
            ["12345", "SO23", "SO23 8UJX", "S023 8UJ!", "QQ", "  "]))
        return rec, "reject", "child.address.postcode", kind
    if kind == "bad_enum":
        path, value = draw(st.sampled_from([
            ("kind", "cme"), ("kind", "OTHER"), ("education_otherwise", "home"),
            ("child.sex", "X"),
        ]))
        set_path(rec, path, value)
        return rec, "reject", path, kind
    if kind == "bad_attendance":
        # A fresh reference: the register is only read for a new referral, not an update.
        rec["mendix_reference"] = reference(draw(st.integers(0, 999)), "AT")
        rec["kind"] = "PMOOE"
        rec["medical_absence"] = False  # medical absence is signposted before the register
        day = rec["received_at"][:10]
        rec["attendance"] = draw(st.sampled_from([
            [{"date": day, "session": "AM", "code": "ZZ"}],
            [{"date": day, "session": "AM", "code": "O"},
             {"date": day, "session": "AM", "code": "/"}],
        ]))
        return rec, "reject", "attendance", kind
    if kind == "no_letter_name":
        path = draw(st.sampled_from(["child.forename", "child.surname"]))
        set_path(rec, path, draw(st.sampled_from(["-", "'", "123", "\u0301\u0301", "--'"])))
        return rec, "reject", path, kind
    # deep_value: structure where a string belongs, as deep as the JSON parser allows
    depth = draw(st.integers(2, 500))
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    rec["reason"] = value
    return rec, "reject", "reason", kind


# --- junk lines -----------------------------------------------------------------------------


def _not_an_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return True


@st.composite
def junk_line(draw: st.DrawFn, sample: dict[str, Any]) -> Generated:
    """A line that is not a referral at all: must be quarantined as ``(record)``."""
    kind = draw(st.sampled_from([
        "text", "array", "scalar", "deep", "truncated", "bom", "big_int", "nul_text",
        "surrogate_text", "binaryish",
    ]))
    full = json.dumps(sample)
    if kind == "text":
        raw = draw(st.text(min_size=0, max_size=200).filter(_not_an_object))
    elif kind == "array":
        raw = json.dumps(draw(st.sampled_from([[sample], [], [1, 2], [[sample, sample]]])))
    elif kind == "scalar":
        raw = draw(st.sampled_from(["1", "-0.5e308", "1e999", "NaN", "null", "true",
                                    '"CME-FZ-000001"', "Infinity"]))
    elif kind == "deep":
        depth = draw(st.sampled_from([5_000, 20_000, 100_000]))
        if draw(st.booleans()):
            raw = "[" * depth + "]" * depth
        else:
            raw = '{"mendix_reference": ' * depth + "1" + "}" * depth
    elif kind == "truncated":
        raw = full[: draw(st.integers(1, len(full) - 1))]
    elif kind == "bom":
        raw = "\ufeff" + full
    elif kind == "big_int":
        raw = '{"mendix_reference": ' + "9" * 5000 + "}"
    elif kind == "nul_text":
        raw = "{\x00" + full[1:draw(st.integers(2, 40))]
    elif kind == "surrogate_text":
        raw = "\ud800" + full[:draw(st.integers(0, 40))]
    else:
        raw = "".join(chr(c) for c in draw(st.lists(st.integers(0, 0x2FF), max_size=60)))
        if not _not_an_object(raw):
            raw = "!" + raw
    return Generated(raw, "reject", f"junk:{kind}", "(record)")


@st.composite
def referral_line(draw: st.DrawFn) -> Generated:
    """One input line: a valid referral, a near-valid one (benign and/or harmful changes),
    or junk."""
    base = draw(valid_referral())
    roll = draw(st.integers(0, 9))
    if roll <= 2:
        rec = draw(benign(base)) if draw(st.booleans()) else base
        return Generated(json.dumps(rec), "accept", "valid", pii=pii_of(rec))
    if roll <= 7:
        start = draw(benign(base)) if draw(st.booleans()) else base
        rec, expect, path, label = draw(harmful(start))
        return Generated(json.dumps(rec), expect, label, path, pii_of(base))
    return draw(junk_line(base))


def referral_batch(min_size: int, max_size: int) -> st.SearchStrategy[list[Generated]]:
    return st.lists(referral_line(), min_size=min_size, max_size=max_size)


# --- the checks -----------------------------------------------------------------------------

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def as_stored(raw: str) -> str:
    """``raw`` as the quarantine table keeps it: NULs and lone surrogates (which neither
    database can store as text) become U+FFFD, like undecodable bytes in a file."""
    return _UNSTORABLE.sub("\ufffd", raw)


@dataclass
class Tally:
    """What a fuzz run pushed through intake, for the run's own assertions."""

    records: int = 0
    examples: int = 0
    by_label: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)


def check_intake(db_url: str, lines: Sequence[Generated], report: IntakeReport,
                 tally: Tally | None = None) -> None:
    """Assert the outcome of ingesting ``lines`` (line numbers 1..n) into an empty database.

    - count in = created + updated + duplicates linked + not CME + quarantined + unchanged;
    - the quarantine table has one row per quarantined line, the line kept whole (see
      :func:`as_stored`), with structured, PII-free reasons naming the expected field;
    - every line that must be accepted is, and is the case (or update) its reference says;
    - independently of the report: distinct accepted references = new rows in ``referral``,
      repeated ones = updated + unchanged.
    """
    n = len(lines)
    assert report.received == n, (report, n)
    assert report.accounted == report.received, report
    with Session(get_engine(db_url)) as s:
        rows = list(s.exec(select(QuarantinedRecord)))
        referrals = list(s.exec(select(Referral)))
        upn_of = {c.id: c.upn for c in s.exec(select(Child))}
    # Only the same UPN links two referrals (issue 18, point 1): never two children who
    # merely share a surname and a date of birth.
    child_of = {r.id: r.child_id for r in referrals}
    for r in referrals:
        if r.duplicate_of_id is not None:
            upn = upn_of[r.child_id]
            assert upn is not None and upn == upn_of[child_of[r.duplicate_of_id]], r.id
    assert sum(r.possible_duplicate_of_id is not None for r in referrals) == \
        report.possible_duplicates, report
    assert len(rows) == report.quarantined, (len(rows), report)
    by_line = {}
    for row in rows:
        assert row.line_no is not None and 1 <= row.line_no <= n, row.line_no
        assert row.line_no not in by_line, f"line {row.line_no} quarantined twice"
        by_line[row.line_no] = row
    accepted_refs: list[str] = []
    for i, g in enumerate(lines, start=1):
        row = by_line.get(i)
        if g.expect == "reject":
            assert row is not None, f"line {i} ({g.label}, {g.field}) was not quarantined"
        if g.expect == "accept":
            assert row is None, f"line {i} ({g.label}) was quarantined: {row and row.reasons}"
        if row is None:
            ref = g.reference
            assert ref is not None, f"line {i} ({g.label}) accepted without a reference"
            accepted_refs.append(ref)
            continue
        data = g.raw.encode("utf-8", errors="replace")
        if len(data) > MAX_RECORD_BYTES:
            # Refused unread (issue 18, point 11): a bounded excerpt and the whole line's hash.
            assert len(row.raw) <= EXCERPT_BYTES and as_stored(g.raw).startswith(
                row.raw.rstrip("\ufffd")), f"line {i} ({g.label}) excerpt is not its start"
            assert row.raw_sha256 == hashlib.sha256(data).hexdigest(), f"line {i} hash"
        else:
            assert row.raw == as_stored(g.raw), f"line {i} ({g.label}) not kept whole"
        assert row.reasons and all(isinstance(r, str) and ": " in r for r in row.reasons), \
            row.reasons
        if g.expect == "reject" and g.field:
            assert any(g.field in r for r in row.reasons), (g.label, g.field, row.reasons)
        for value in g.pii:
            assert all(value not in r for r in row.reasons), (g.label, row.reasons)
        if tally is not None:
            tally.outcomes["quarantined"] += 1
    distinct = list(dict.fromkeys(accepted_refs))
    assert report.created + report.duplicates_linked + report.not_cme == len(distinct), report
    assert report.updated + report.unchanged == len(accepted_refs) - len(distinct), report
    assert sorted(r.mendix_reference for r in referrals) == sorted(distinct)
    assert sum(r.duplicate_of_id is not None for r in referrals) == report.duplicates_linked
    assert sum(r.classification == "NOT_CME" for r in referrals) == report.not_cme
    if tally is not None:
        tally.records += n
        tally.examples += 1
        tally.by_label.update(g.label for g in lines)
        for key in ("created", "updated", "duplicates_linked", "possible_duplicates",
                    "not_cme", "unchanged"):
            tally.outcomes[key] += getattr(report, key)


def numbered(lines: Sequence[Generated]) -> list[tuple[int | None, str]]:
    return [(i, g.raw) for i, g in enumerate(lines, start=1)]


__all__ = [
    "Generated", "Tally", "as_stored", "benign", "check_intake", "child_identity",
    "deep_requested", "harmful", "junk_line", "make_upn", "numbered", "pii_of", "reference",
    "referral_batch", "referral_line", "reset_db", "skip_unless_deep",
    "valid_referral", "wrong_check_letter",
]
