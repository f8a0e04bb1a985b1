"""Operator commands: cases, one case, the outbox, rejected intake, disclosures, retention.

Everything reads the database named by ``CME_DATABASE_URL``. Tables are for people;
``--json`` prints one JSON document on stdout and nothing else, for scripts. The views come
from :mod:`tasks.reports`, which keeps personal data out of every list; ``cme case`` shows
the child's initials only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cme.errors import CmeError

__all__ = ["register"]

T = TypeVar("T")

# Piped output (| less, > file) would otherwise be cut to 80 columns and truncate references.
console = Console(width=None if sys.stdout.isatty() else 200)

intake_app = typer.Typer(help="Referral intake: records that could not be accepted.",
                         no_args_is_help=True)
audit_app = typer.Typer(help="Audit what the LA disclosed to other agencies.",
                        no_args_is_help=True)
retention_app = typer.Typer(help="Retention: anonymise closed cases past the retention period.",
                            no_args_is_help=True)
outbox_app = typer.Typer(help="The notifications outbox: list it (no sub-command), or re-queue "
                         "failed messages (retry).", invoke_without_command=True)

JSON_HELP = "Print JSON on stdout instead of a table."
LIMIT_HELP = "Show at most N rows, newest first (0 = all)."


def register(app: typer.Typer) -> None:
    """Add the operator commands to the ``cme`` app."""
    app.command("cases")(cases_cmd)
    app.command("case")(case_cmd)
    outbox_app.callback()(outbox_cmd)
    app.add_typer(outbox_app, name="outbox")
    app.add_typer(intake_app, name="intake")
    app.add_typer(audit_app, name="audit")
    app.add_typer(retention_app, name="retention")


# --------------------------------------------------------------------------- plumbing


def _db_url() -> str:
    from cme.cli import settings  # the CLI's settings reader turns bad values into one line

    return settings().database_url


@contextmanager
def _database_errors() -> Iterator[None]:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        raise CmeError(
            f"cannot read the case database ({type(exc.orig).__name__}); check "
            "CME_DATABASE_URL and run `cme db upgrade`"
        ) from exc


def _read(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    from tasks.reports import CaseNotFound

    with _database_errors():
        try:
            return fn(*args, **kwargs)
        except CaseNotFound as exc:
            raise CmeError(str(exc)) from None


def _today() -> date:
    from policy import london_date

    return london_date(datetime.now(UTC))


def _print_json(value: Any) -> None:
    from tasks.reports import to_jsonable

    typer.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def _when(value: datetime | date | None) -> str:
    """Dates as ISO; instants as Europe/London local time to the minute."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        from policy import LONDON

        return value.astimezone(LONDON).strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def _opt(value: object) -> str:
    return "—" if value is None or value == "" else str(value)


_ACK_STYLE = {"met": "green", "late": "yellow", "due": "", "overdue": "bold red"}


def _limit(n: int) -> int | None:
    return n or None


# --------------------------------------------------------------------------- cases


def _check_status(status: str | None) -> str | None:
    from models import CaseStatus
    from tasks.reports import OPEN

    if status is None:
        return None
    valid = [OPEN, *(s.value for s in CaseStatus)]
    status = status.strip().lower()
    if status not in valid:
        raise CmeError(f"unknown status {status!r}; choose one of: {', '.join(valid)}")
    return status


def cases_cmd(
    status: str | None = typer.Option(
        None, "--status", "-s", metavar="S",
        help="Only cases in this status: open (anything not closed), received, acknowledged, "
        "tracing, awaiting_response, located, transferred, left_uk, whereabouts_unknown, "
        "needs_review, escalated, closed."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    limit: int = typer.Option(200, "--limit", "-n", min=0, metavar="N", help=LIMIT_HELP),
) -> None:
    """List cases: reference, status, outcome, school, acknowledgement and tracing dates.

    No personal data is shown here; use `cme case REF` for one case.
    """
    from tasks.reports import count_cases, list_cases

    status = _check_status(status)
    url = _db_url()
    rows = _read(list_cases, url, today=_today(), status=status, limit=_limit(limit))
    if as_json:
        _print_json(rows)
        return
    total = _read(count_cases, url, status=status)
    table = Table(title=f"Cases{f' ({status})' if status else ''}", title_justify="left")
    for name in ("Reference", "Kind", "Status", "Outcome", "School URN", "Received",
                 "Ack due", "Ack", "Next check", "Rounds"):
        table.add_column(name, no_wrap=name in ("Reference", "Received", "Ack due"))
    for r in rows:
        ack = r.acknowledgement
        table.add_row(
            r.reference, r.kind, r.status, _opt(r.outcome), r.school_urn, _when(r.received_on),
            _when(r.acknowledgement_due),
            f"[{_ACK_STYLE[ack]}]{ack}[/]" if _ACK_STYLE[ack] else ack,
            _when(r.next_check_due), str(r.tracing_rounds),
        )
    console.print(table)
    shown = f"{len(rows)} of {total}" if len(rows) < total else str(total)
    console.print(f"{shown} case{'s' if total != 1 else ''}"
                  + (" (use --limit 0 to see all)" if len(rows) < total else ""))


def case_cmd(
    reference: str = typer.Argument(..., metavar="REF", help="The case's Mendix reference."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    show_personal: bool = typer.Option(
        False, "--show-personal",
        help="With --json: include the addresses the agencies hold (personal data)."),
) -> None:
    """Show one case: its facts, what each agency found, timeline, checks and notifications.

    This is an officer's terminal view: the child appears as initials only. The full
    details (names, date of birth, addresses) are in the `case-report` flow's artifact in
    the Prefect UI; `--json --show-personal` adds the addresses agencies hold.
    """
    from tasks.reports import case_detail

    d = _read(case_detail, _db_url(), reference.strip().upper(), today=_today(),
              show_personal=show_personal and as_json)
    if as_json:
        _print_json(d)
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    child = d.child_initials + (" (anonymised under retention policy)"
                                if d.child_anonymised else "")
    for label, value in (
        ("Reference", d.reference),
        ("Kind", d.kind),
        ("Child", child),
        ("Status", d.status),
        ("Outcome", _opt(d.outcome)),
        ("Decision rule", _opt(d.decision_rule)),
        ("Classification", f"{d.classification}"
                           + (f" ({d.classification_reason})" if d.classification_reason else "")),
        ("Safeguarding", (f"[bold red]{escape(d.safeguarding)}[/]"
                          if d.concerns and d.closed_at is None
                          else escape(d.safeguarding))),
        ("Proposed", (f"{d.proposed_outcome}, since {_when(d.proposed_at)}: waiting for an "
                      "officer's decision (decide-case)") if d.proposed_outcome else "—"),
        ("Officer's decision", _opt(d.confirmed_outcome)),
        ("School", f"{d.school_urn} {d.school_name}"),
        ("Missing school actions", ", ".join(d.missing_actions) or "none"),
        ("Received", _when(d.received_at)),
        ("Acknowledgement", f"due {_when(d.acknowledgement_due)}, {d.acknowledgement}"
                            + (f" ({_when(d.acknowledged_at)})" if d.acknowledged_at else "")),
        ("Next check due", _when(d.next_check_due)),
        ("Tracing rounds", str(d.tracing_rounds)),
        ("Closed", f"{_when(d.closed_at)}"
                   + (f" ({d.closure_reason})" if d.closure_reason else "")),
        ("Duplicate of", _opt(d.duplicate_of)),
    ):
        facts.add_row(label, value)
    console.print(facts)

    timeline = Table(title="Timeline", title_justify="left")
    for name in ("At", "Kind", "Rule", "What happened", "By"):
        timeline.add_column(name, no_wrap=name == "At")
    for e in d.timeline:
        timeline.add_row(_when(e.at), e.kind, _opt(e.rule), e.text, e.actor)
    console.print(timeline)

    found = Table(title="What the agencies found (addresses: in the case report)",
                  title_justify="left")
    for name in ("Round", "Agency", "Found", "How matched", "LA", "School", "Movement",
                 "Agency ref"):
        found.add_column(name)
    for ev in d.evidence:
        if ev.problem:
            found.add_row(str(ev.round), escape(ev.agency), escape(f"unreadable: {ev.problem}"),
                          "—", "—", "—", "—", escape(_opt(ev.agency_reference)))
            continue
        movement = (f"left {ev.departure_date} for {ev.departure_country or '?'}"
                    if ev.departure_date else f"arrived {ev.arrival_date}"
                    if ev.arrival_date else ev.ctf_destination or "—")
        found.add_row(str(ev.round), escape(ev.agency), escape(ev.kind),
                      f"{escape(ev.how_matched or '')} ({ev.confidence or 0.0:.2f})",
                      _opt(ev.la_code),
                      escape(f"{ev.school_urn or ''} {ev.school_name or ''}".strip()) or "—",
                      escape(str(movement)), escape(_opt(ev.agency_reference)))
    if d.evidence:
        console.print(found)

    checks = Table(title="Agency checks", title_justify="left")
    for name in ("Round", "Connector", "Outcome", "Checked", "Fields disclosed",
                 "Agency ref", "Expected by", "Error"):
        checks.add_column(name)
    for c in d.checks:
        error = "/".join(x for x in (c.error_kind, c.error_code) if x) or "—"
        checks.add_row(str(c.round), f"{c.connector} {c.connector_version}", c.outcome,
                       _when(c.checked_at), ", ".join(c.fields_disclosed) or "—",
                       _opt(c.agency_reference), _when(c.expected_by), error)
    console.print(checks)

    notes = Table(title="Notifications", title_justify="left")
    for name in ("Id", "Template", "Channel", "Recipient", "Status", "Attempts", "Sent"):
        notes.add_column(name)
    for n in d.notifications:
        notes.add_row(str(n.id), n.template, n.channel, n.recipient, n.status,
                      str(n.attempts), _when(n.sent_at))
    console.print(notes)


# --------------------------------------------------------------------------- outbox


def outbox_cmd(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None, "--status", "-s", metavar="S",
        help="Only notifications in this status: pending, sending, sent, failed."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    limit: int = typer.Option(200, "--limit", "-n", min=0, metavar="N", help=LIMIT_HELP),
) -> None:
    """List the notifications outbox and how many notifications are in each status."""
    if ctx.invoked_subcommand is not None:
        return
    from models import NotificationStatus
    from tasks.reports import list_outbox

    if status is not None:
        status = status.strip().lower()
        valid = [s.value for s in NotificationStatus]
        if status not in valid:
            raise CmeError(f"unknown status {status!r}; choose one of: {', '.join(valid)}")
    box = _read(list_outbox, _db_url(), status=status, limit=_limit(limit))
    if as_json:
        _print_json(box)
        return
    table = Table(title="Outbox", title_justify="left")
    for name in ("Id", "Reference", "Template", "Channel", "Recipient", "Status", "Attempts",
                 "Next attempt", "Sent", "Last error"):
        wrap = name in ("Recipient", "Last error")
        table.add_column(name, overflow="fold" if wrap else "ellipsis", no_wrap=not wrap)
    for n in box.notifications:
        table.add_row(str(n.id), _opt(n.reference), n.template, n.channel, n.recipient, n.status,
                      str(n.attempts), _when(n.next_attempt_at), _when(n.sent_at),
                      _opt(n.last_error))
    console.print(table)
    console.print("By status: " + ", ".join(f"{k} {v}" for k, v in box.by_status.items()))


@outbox_app.command("retry")
def outbox_retry(
    reference: str | None = typer.Option(
        None, "--ref", metavar="REF", help="Only this case's failed messages (Mendix reference)."),
    include_unknown: bool = typer.Option(
        False, "--include-unknown",
        help="Also messages whose delivery is unknown (SMTP cut off mid-send). They may have "
        "arrived: use only after checking with the recipient."),
) -> None:
    """Re-queue failed messages: they go at the next dispatch, with a fresh retry period.

    Messages whose delivery is unknown are left alone unless --include-unknown.
    """
    from sqlmodel import Session, col, select

    from models import Notification, NotificationStatus, Referral, get_engine
    from notifications import OUTCOME_UNKNOWN, requeue_failed

    url = _db_url()
    with _database_errors():
        ids: list[int] | None = None
        with Session(get_engine(url)) as s:
            q = select(Notification.id, Notification.last_error).where(
                Notification.status == NotificationStatus.failed)
            if reference is not None:
                ref = reference.strip()
                if s.exec(select(Referral.id).where(Referral.mendix_reference == ref)).first() \
                        is None:
                    raise CmeError(f"no case with reference {ref!r}")
                q = q.join(Referral, col(Referral.id) == Notification.referral_id).where(
                    Referral.mendix_reference == ref)
            failed = s.exec(q).all()
            ids = [i for i, _ in failed if i is not None]
        done = requeue_failed(url, notification_ids=ids, include_outcome_unknown=include_unknown)
    unknown_prefix = OUTCOME_UNKNOWN.split("{channel}")[0]
    left = sum(1 for i, err in failed if i not in done and (err or "").startswith(unknown_prefix))
    where = f" for {reference.strip()}" if reference else ""
    console.print(f"Re-queued {len(done)} failed message{'s' if len(done) != 1 else ''}{where}; "
                  "they are sent at the next dispatch.")
    if left:
        console.print(f"[yellow]{left} left failed:[/yellow] delivery unknown (they may have "
                      "arrived); check with the recipient, then use --include-unknown.")


# --------------------------------------------------------------------------- intake


@intake_app.command("rejected")
def intake_rejected(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    show_raw: bool = typer.Option(
        False, "--show-raw",
        help="Also print each record as received. It may hold a child's personal data: use "
        "only when you need it, and not in a shared terminal or log."),
    limit: int = typer.Option(200, "--limit", "-n", min=0, metavar="N", help=LIMIT_HELP),
) -> None:
    """List quarantined input records with the reasons they were rejected.

    The record itself is not shown unless --show-raw is given.
    """
    from tasks.reports import list_quarantined, to_jsonable

    rows = _read(list_quarantined, _db_url(), include_raw=show_raw, limit=_limit(limit))
    if as_json:
        data = [to_jsonable(r) for r in rows]
        if not show_raw:
            for item in data:
                del item["raw"]  # not even as null: the key's absence says it was withheld
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    table = Table(title="Rejected intake records", title_justify="left")
    for name in ("Id", "Source", "Line", "Mendix ref", "Reasons", "Received"):
        wrap = name in ("Source", "Reasons")
        table.add_column(name, overflow="fold" if wrap else "ellipsis", no_wrap=not wrap)
    if show_raw:
        table.add_column("Raw record", overflow="fold")
    for r in rows:
        cells = [str(r.id), r.source, _opt(r.line_no), _opt(r.mendix_reference),
                 "\n".join(r.reasons) or "—", _when(r.received_at)]
        if show_raw:
            cells.append(r.raw or "")
        table.add_row(*cells)
    console.print(table)
    console.print(f"{len(rows)} rejected record{'s' if len(rows) != 1 else ''}")


# --------------------------------------------------------------------------- audit


@audit_app.command("disclosures")
def audit_disclosures(
    reference: str | None = typer.Option(None, "--ref", metavar="REF",
                                         help="Only the checks of this case."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List what was disclosed to each agency (field names, never values) and a summary."""
    from tasks.reports import disclosure_audit

    audit = _read(disclosure_audit, _db_url(),
                  reference=reference.strip() if reference else None)
    if as_json:
        _print_json(audit)
        return
    table = Table(title="Disclosures" + (f" for {reference}" if reference else ""),
                  title_justify="left")
    for name in ("Reference", "Connector", "Version", "Round", "Checked", "Outcome",
                 "Fields disclosed"):
        table.add_column(name, overflow="fold")
    for c in audit.checks:
        table.add_row(c.reference, c.connector, c.connector_version, str(c.round),
                      _when(c.checked_at), c.outcome, ", ".join(c.fields_disclosed) or "—")
    console.print(table)
    summary = Table(title="By agency", title_justify="left")
    for name in ("Connector", "Checks", "Disclosures", "Cases", "Fields disclosed",
                 "Versions"):
        summary.add_column(name, overflow="fold")
    for s in audit.summary:
        summary.add_row(s.connector, str(s.checks), str(s.disclosures), str(s.referrals),
                        ", ".join(s.fields) or "—", ", ".join(s.versions))
    console.print(summary)


# --------------------------------------------------------------------------- retention


@retention_app.command("apply")
def retention_apply(
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Count what would change; change nothing."),
    years: int | None = typer.Option(
        None, "--years", min=1, metavar="N",
        help="Years after closure (default: CME_RETENTION_YEARS, 6)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Anonymise closed cases whose closure is older than the retention period.

    Personal data of the child, the school's free text, agency evidence and message
    personalisation are removed; the case rows (kind, status, outcome, dates, school) stay
    so aggregate counts still work. Quarantined records older than the period are deleted.
    Open cases, and children with an open or recent case, are never touched. Safe to re-run.
    """
    from cme.cli import settings
    from tasks.retention import apply_retention

    cfg = settings()
    n = years if years is not None else cfg.retention_years
    with _database_errors():
        report = apply_retention(cfg.database_url, now=datetime.now(UTC), years=n,
                                 dry_run=dry_run)
    if as_json:
        _print_json(report)
        return
    verb = "Would change" if dry_run else "Changed"
    console.print(f"Retention: closed before {_when(report.cutoff)} ({n} years)"
                  + (" [yellow]— dry run, nothing changed[/]" if dry_run else ""))
    table = Table(title=verb, title_justify="left")
    table.add_column("What")
    table.add_column("Count", justify="right")
    for label, value in (
        ("cases anonymised", report.referrals_anonymised),
        ("children anonymised", report.children_anonymised),
        ("children kept (another case open or recent)", report.children_kept_in_use),
        ("agency evidence cleared", report.checks_cleared),
        ("notifications minimised", report.notifications_minimised),
        ("quarantined records deleted", report.quarantined_deleted),
        ("cases already anonymised", report.already_anonymised),
        ("closed cases with no closure date (skipped)", report.closed_without_date),
    ):
        table.add_row(label, str(value))
    console.print(table)
