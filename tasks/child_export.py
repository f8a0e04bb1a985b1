"""A child's data on request (UK GDPR right of access): every row held about one child.

:func:`export_child` gathers, for the child behind one case reference, every row of every
table that holds that child's data — the child, all their referrals, the checks (what was
disclosed to which agency and when), the timeline, the notifications, the safeguarding
concerns, the records kept from intake, the attendance data — and :func:`write_export`
writes it as JSON and a readable markdown summary, readable by the officer only (files 0600
in a folder 0700). It is a command-line job, never an artifact: the export is the child's
whole record (README, "A child's data on request").

Completeness is checked, not hoped for: :data:`EXPORTED_TABLES` names every table the export
reads, and :func:`unexported_tables` lists any table of the data model that holds a child id
or a referral id (a foreign key to ``child`` or ``referral``, or a ``child_id`` /
``referral_id`` column) and is not among them. :func:`export_child` refuses to run while that
list is not empty, and a test keeps it empty.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers every table in the metadata)
from models import CmeDataError, Template, get_engine

__all__ = [
    "EXPORTED_TABLES",
    "ChildExport",
    "ChildNotFound",
    "IncompleteExportError",
    "child_tables",
    "export_child",
    "render_markdown",
    "unexported_tables",
    "write_export",
]

#: Every table the export reads, with the heading it gets in the summary, in that order.
EXPORTED_TABLES: dict[str, str] = {
    "child": "The child",
    "referral": "Referrals and cases",
    "check": "Checks with other agencies (what was disclosed, to whom, when)",
    "caseevent": "Timeline",
    "notification": "Notifications",
    "safeguardingconcern": "Safeguarding concerns",
    "roundclaim": "Tracing rounds in progress (held only while a run asks the agencies)",
    "quarantinedrecord": "Records kept from intake (could not be accepted)",
    "attendancepupil": "Attendance data: the pupil",
    "attendancemark": "Attendance data: register marks",
}

_LINK_TABLES = frozenset({"child", "referral"})
_LINK_COLUMNS = frozenset({"child_id", "referral_id"})


class ChildNotFound(CmeDataError):
    """No case has the reference asked for."""


class IncompleteExportError(CmeDataError):
    """A table holds a child's data but the export does not read it."""


def child_tables(metadata: sa.MetaData | None = None) -> set[str]:
    """Names of the tables that hold a child id or a referral id: a foreign key to ``child``
    or ``referral`` (a table's own primary key aside), or a ``child_id``/``referral_id``
    column; plus ``child`` and ``referral`` themselves."""
    md = metadata if metadata is not None else SQLModel.metadata
    found = {name for name in _LINK_TABLES if name in md.tables}
    for table in md.tables.values():
        for column in table.columns:
            if column.name in _LINK_COLUMNS or any(
                    fk.column.table.name in _LINK_TABLES for fk in column.foreign_keys):
                found.add(table.name)
    return found


def unexported_tables(metadata: sa.MetaData | None = None) -> list[str]:
    """Tables holding a child id or a referral id that :data:`EXPORTED_TABLES` leaves out."""
    return sorted(child_tables(metadata) - set(EXPORTED_TABLES))


@dataclass
class ChildExport:
    """Everything held about one child. ``tables`` maps a table name to its rows (every
    column, JSON-ready); ``places`` lists where else the data lives."""

    reference: str
    child_id: int
    references: list[str]
    generated_at: datetime
    database: str
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    places: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "child_id": self.child_id,
            "references": self.references,
            "generated_at": self.generated_at.isoformat(),
            "database": self.database,
            "tables": self.tables,
            "places": self.places,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _rows(conn: sa.Connection, table: sa.Table, where: Any) -> list[dict[str, Any]]:
    pk = list(table.primary_key.columns)
    q = sa.select(table).where(where).order_by(*pk)
    return [{k: _jsonable(v) for k, v in row.items()} for row in conn.execute(q).mappings()]


def _mentions(personalisation: Any, references: set[str]) -> bool:
    # A half-termly update names several cases in one message, by reference.
    updates = personalisation.get("updates") if isinstance(personalisation, dict) else None
    return isinstance(updates, list) and any(
        isinstance(u, dict) and u.get("reference") in references for u in updates)


def _places(database: str, references: list[str], outbox_dir: str) -> list[str]:
    refs = ", ".join(references)
    return [
        f"The case database ({database}): the tables in this export.",
        "The Prefect server: each run of the `case-report` deployment for one of these "
        f"references ({refs}) published a markdown artifact holding the child's details. "
        "Find them in the Prefect UI under Runs, filtered by the deployment `case-report` "
        "(each run is named after its reference), on each run's Artifacts tab; the artifact's "
        "description is 'Case report <reference>'. Delete them there (or with the API: "
        "DELETE /api/artifacts/<id>) when the case is anonymised. The other flows' parameters, "
        "run names and artifacts carry references and counts only.",
        f"The notifications outbox: with the `file` channel, one .eml file per message in "
        f"CME_OUTBOX_DIR ({outbox_dir}); sent messages are also in the recipients' mailboxes "
        "(the schools, other LAs, the CME duty inbox). Messages carry references and initials "
        "only.",
        "The files the referrals and attendance data arrived in (the Mendix export and the "
        "attendance extracts), wherever the team keeps them.",
        "Other agencies: each check in this export lists the fields disclosed to that agency "
        "and its reference for the enquiry; the agency holds what it was sent.",
    ]


def export_child(db_url: str, reference: str, *, outbox_dir: str = "outbox",
                 now: datetime | None = None) -> ChildExport:
    """Every row about the child behind case ``reference`` and all of that child's referrals.

    Raises :class:`ChildNotFound` for an unknown reference, and :class:`IncompleteExportError`
    if a table holding a child id or referral id is missing from :data:`EXPORTED_TABLES`.
    """
    missing = unexported_tables()
    if missing:
        raise IncompleteExportError(
            "the export does not read table(s) holding a child's data: " + ", ".join(missing))
    md = SQLModel.metadata
    t = {name: md.tables[name] for name in EXPORTED_TABLES}
    engine = get_engine(db_url)
    with engine.connect() as conn:
        child_id = conn.execute(sa.select(t["referral"].c.child_id).where(
            t["referral"].c.mendix_reference == reference)).scalar()
        if child_id is None:
            raise ChildNotFound(f"no case with reference {reference}")
        out = ChildExport(reference=reference, child_id=child_id, references=[],
                          generated_at=now or datetime.now(UTC),
                          database=sa.engine.make_url(db_url).render_as_string(
                              hide_password=True))
        tables = out.tables
        tables["child"] = _rows(conn, t["child"], t["child"].c.id == child_id)
        tables["referral"] = _rows(conn, t["referral"], t["referral"].c.child_id == child_id)
        rids = [r["id"] for r in tables["referral"]]
        out.references = [r["mendix_reference"] for r in tables["referral"]]
        for name in ("check", "caseevent", "safeguardingconcern", "roundclaim"):
            tables[name] = _rows(conn, t[name], t[name].c.referral_id.in_(rids))
        n = t["notification"]
        own = _rows(conn, n, n.c.referral_id.in_(rids))
        refs = set(out.references)
        shared = [row for row in _rows(conn, n, sa.and_(
            n.c.referral_id.is_(None), n.c.template == Template.half_termly_update.value))
            if _mentions(row["personalisation"], refs)]
        tables["notification"] = sorted(own + shared, key=lambda r: r["id"])
        q = t["quarantinedrecord"]
        upns = [u for u in (row["upn"] for row in tables["child"]) if u]
        # Attendance rows that could not be read carry no reference, only the UPN in the
        # kept row (README, "Attendance file"). UPNs are letters and digits: no LIKE escapes.
        tables["quarantinedrecord"] = _rows(conn, q, sa.or_(
            q.c.mendix_reference.in_(out.references),
            *[sa.and_(q.c.source.like("attendance:%"), q.c.raw.like(f"%{u}%")) for u in upns]))
        p = t["attendancepupil"]
        tables["attendancepupil"] = _rows(conn, p, sa.or_(
            p.c.child_id == child_id, p.c.upn.in_(upns), p.c.case_id.in_(rids)))
        pids = [row["id"] for row in tables["attendancepupil"]]
        m = t["attendancemark"]
        tables["attendancemark"] = _rows(conn, m, m.c.pupil_id.in_(pids))
    out.places = _places(out.database, out.references, outbox_dir)
    return out


# Values never start a line (they follow a heading or a list marker), so the characters that
# only mean something there (-, +, 1.) need no escape.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#!|~])")


def _md(value: Any) -> str:
    """A value as markdown text: stored free text is escaped so it shows as written."""
    if value is None or value == "" or value == []:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def render_markdown(export: ChildExport) -> str:
    """The export as a readable summary: one section per table, one block per row."""
    lines = [
        f"# Data held about the child on case {_md(export.reference)}",
        "",
        f"Produced {export.generated_at:%Y-%m-%d %H:%M} UTC from {_md(export.database)}. "
        f"Cases of this child: {_md(', '.join(export.references))}.",
        "",
        "Personal data: for the requester and the CME team only.",
        "",
    ]
    for name, heading in EXPORTED_TABLES.items():
        rows = export.tables.get(name, [])
        lines += [f"## {heading} ({len(rows)})", ""]
        if not rows:
            lines += ["None held.", ""]
        for row in rows:
            lines.append(f"### {name} {row.get('id', '')}")
            lines += [f"- **{_md(k)}**: {_md(v)}" for k, v in row.items() if k != "id"]
            lines.append("")
    lines += ["## Where this child's data lives", ""]
    lines += [f"{i}. {place}" for i, place in enumerate(export.places, start=1)]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_export(export: ChildExport, out_dir: Path) -> list[Path]:
    """Write ``child-<reference>.json`` and ``.md`` into ``out_dir`` (created 0700, or made
    0700 if it exists), each file 0600. Returns the two paths."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    stem = "child-" + re.sub(r"[^A-Za-z0-9_-]", "_", export.reference)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    _write_private(json_path, json.dumps(export.to_json(), indent=2, ensure_ascii=False) + "\n")
    _write_private(md_path, render_markdown(export))
    return [json_path, md_path]
