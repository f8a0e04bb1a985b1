"""``cme connectors``: what connectors are installed and enabled, and are they healthy."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from connectors import RegistryError, available, check_health, enabled_names, load_enabled

app = typer.Typer(help="Agency connectors: list installed/enabled ones, probe their health.",
                  no_args_is_help=True)


@app.command("list")
def list_connectors(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Installed connectors (entry points in group cme.connectors) and whether enabled."""
    console = Console()
    found = available()
    enabled = set(enabled_names())
    rows = [
        {"name": i.name, "version": i.version, "agency": i.agency,
         "fields": sorted(i.fields), "deferred": i.deferred, "enabled": i.name in enabled,
         "package": f"{i.package} {i.package_version}"}
        for i in sorted(found.connectors.values(), key=lambda i: i.name)
    ]
    if as_json:
        typer.echo(json.dumps({"connectors": rows, "problems": found.problems}, indent=1))
    else:
        table = Table(title="Agency connectors")
        for col in ("name", "version", "agency", "fields disclosed", "mode", "enabled",
                    "source package"):
            table.add_column(col)
        for r in rows:
            table.add_row(str(r["name"]), str(r["version"]), str(r["agency"]),
                          ", ".join(r["fields"]),  # type: ignore[arg-type]
                          "deferred" if r["deferred"] else "immediate",
                          "yes" if r["enabled"] else "no", str(r["package"]))
        console.print(table)
        unknown = enabled - set(found.connectors)
        for name in sorted(unknown):
            console.print(f"[red]enabled but not installed:[/red] {name}")
        for p in found.problems:
            console.print(f"[red]problem:[/red] {p}")
    if found.problems or enabled - set(found.connectors):
        raise typer.Exit(1)


@app.command("check")
def check(
    names: list[str] = typer.Argument(None, help="Connectors to probe (default: enabled)."),
    reference: str = typer.Option(
        None, "--reference", help="Ask one connector (NAME) about this referral of the case "
        "database and show what it sent, what came back and what it parsed."),
    show_personal: bool = typer.Option(
        False, "--show-personal", help="With --reference: show personal values and raw "
        "bodies (synthetic data and test agencies only)."),
) -> None:
    """Health probe of each enabled connector (configuration and agency reachability); with
    --reference, one check of one connector for a connector author debugging it."""
    console = Console()
    if reference is not None:
        if not names or len(names) != 1:
            console.print("[red]--reference needs exactly one connector NAME[/red]")
            raise typer.Exit(2)
        # Soft wrap: URLs and bodies print on one line each, whatever the terminal's width.
        _debug_check(Console(soft_wrap=True), names[0], reference, show_personal)
        return
    try:
        connectors = load_enabled(names or None)
    except RegistryError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if not connectors:
        console.print("No connectors enabled (set CME_CONNECTORS).")
        raise typer.Exit(1)

    async def probe() -> list[tuple[str, bool, str]]:
        reports = await asyncio.gather(*(check_health(c) for c in connectors))
        return [(r.connector, r.ok, r.detail) for r in reports]

    table = Table(title="Connector health")
    for col in ("name", "ok", "detail"):
        table.add_column(col)
    results = asyncio.run(probe())
    for name, ok, detail in results:
        table.add_row(name, "[green]ok[/green]" if ok else "[red]FAIL[/red]", detail)
    console.print(table)
    if not all(ok for _, ok, _ in results):
        raise typer.Exit(1)


class _Recorder(httpx.AsyncBaseTransport):
    """Passes requests on and keeps each request and its answer (for printing)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[httpx.Request, int | None, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.HTTPError:
            self.exchanges.append((request, None, b""))
            raise
        content = await response.aread()
        self.exchanges.append((request, response.status_code, content))
        headers = [(k, v) for k, v in response.headers.items()
                   if k.lower() not in ("content-encoding", "content-length",
                                        "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=content,
                              request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _personal_values(subject: Any) -> list[tuple[str, str]]:
    """(field, text) for every personal value of the subject, longest first."""
    out: list[tuple[str, str]] = []
    for field in ("upn", "forename", "surname", "former_surnames", "dob", "postcode",
                  "address_line", "town", "parent_surname", "nhs_number"):
        value = getattr(subject, field)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, date):
                texts = [v.isoformat(), v.strftime("%d/%m/%Y"), v.strftime("%Y%m%d")]
            else:
                texts = [str(v)] if v not in (None, "") else []
            out += [(field, t) for t in texts if len(t) >= 2]
    return sorted(out, key=lambda ft: -len(ft[1]))


def _mask(text: str, personal: list[tuple[str, str]]) -> str:
    for field, value in personal:
        text = re.sub(re.escape(value), f"<{field}>", text, flags=re.I)
    return text


def _shape(content: bytes) -> str:
    """A body without its values: JSON keys, or the size of anything else."""
    try:
        data = json.loads(content)
    except ValueError:
        return f"{len(content)} bytes (not JSON; --show-personal prints it)"

    def keys(node: Any, prefix: str = "") -> list[str]:
        if isinstance(node, dict):
            return [k for key, v in node.items() for k in ([f"{prefix}{key}"] +
                                                            keys(v, f"{prefix}{key}."))]
        if isinstance(node, list) and node:
            return keys(node[0], f"{prefix}[].")
        return []

    return "JSON with keys: " + (", ".join(keys(data)) or "(none)")


_HIDDEN_EVIDENCE = ("address", "town", "postcode")


def _debug_check(console: Console, name: str, reference: str, show_personal: bool) -> None:
    from cme.cli import settings
    from cme.errors import CmeError
    from connectors import Outcome, run_connector, run_deferred_poll, run_deferred_submit
    from policy import london_date
    from tasks.tracing import trace_subject, wired_connector

    s = settings()
    subject = trace_subject(s.database_url, reference)
    if subject is None:
        raise CmeError(f"no referral {reference} in the case database (CME_DATABASE_URL)")
    today = london_date(datetime.now(UTC))
    connector, transport = wired_connector(
        name, today, agency_environment=s.agency_environment,
        sandbox_world=str(s.sandbox_world) if s.sandbox_world else None)
    recorder = _Recorder(transport or httpx.AsyncHTTPTransport())

    async def go() -> list[Any]:
        if not connector.deferred:
            return await run_connector(connector, [subject], transport=recorder)
        outs = await run_deferred_submit(connector, [subject], transport=recorder)
        ref = outs[0].result.agency_reference
        if outs[0].result.outcome is Outcome.PENDING and ref:
            outs += await run_deferred_poll(connector, [(subject.reference, ref)],
                                            transport=recorder)
        return outs

    outcomes = asyncio.run(go())
    personal = [] if show_personal else _personal_values(subject)
    console.print(f"[bold]{name}[/bold] {connector.version} asked about {reference} "
                  f"({'personal values shown' if show_personal else 'personal values masked'})")
    console.print("declared fields: " + ", ".join(sorted(connector.fields)))
    for out in outcomes:
        console.print(f"{out.operation}: disclosed {', '.join(out.disclosed_fields) or 'nothing'}"
                      f"; {out.http_calls} HTTP call(s)")
    for i, (request, status, content) in enumerate(recorder.exchanges, 1):
        console.print(f"\nrequest {i}: {request.method} "
                      f"{_mask(str(request.url), personal)}", markup=False)
        body = request.content
        if body:
            console.print("  sent: " + (body.decode("utf-8", "replace") if show_personal
                                        else _mask(_shape(body), personal)), markup=False)
        console.print(f"  answer: {status if status is not None else 'no answer'}"
                      + (": " + (content.decode("utf-8", "replace") if show_personal
                                 else _mask(_shape(content), personal)) if content else ""),
                      markup=False)
    for out in outcomes:
        r = out.result
        console.print(f"\n[bold]parsed ({out.operation})[/bold]: {r.outcome.value}"
                      + (f" - {r.error_kind}/{r.error_code}: {r.message}" if r.error_code
                         else "")
                      + (f" - agency reference {r.agency_reference}" if r.agency_reference
                         else "")
                      + (f", expected by {r.expected_by}" if r.expected_by else ""))
        for e in r.evidence:
            shown = e.model_dump(mode="json", exclude_none=True)
            if not show_personal:
                shown = {k: ("<hidden>" if k in _HIDDEN_EVIDENCE else v)
                         for k, v in shown.items()}
            console.print("  evidence: " + _mask(json.dumps(shown), personal), markup=False)
    if not show_personal:
        console.print("\n(--show-personal prints the bodies and addresses: synthetic data "
                      "and test agencies only)")


@app.command("new")
def new(
    name: str = typer.Argument(..., help="Connector name, [a-z][a-z0-9_]* (also the "
                               "CME_<NAME>_ settings prefix)."),
    deferred: bool = typer.Option(False, "--deferred", help="The agency answers later: "
                                  "file a request (submit), ask for the answer (poll)."),
    agency: str = typer.Option(None, "--agency", help="The agency's name, for people."),
    out: Path = typer.Option(Path("."), "--out", help="Folder to write the package in."),
) -> None:
    """Write a connector package of its own: the connector and its settings, conformance
    kit tests, a fake agency for local runs, and a README. Its tests pass as written."""
    from cme.scaffold import new_connector_package

    made = new_connector_package(name, out, deferred=deferred, agency=agency)
    console = Console()
    console.print(f"[green]Wrote {made.dist}[/green] in {made.root}")
    for path in made.files:
        console.print(f"  {path.relative_to(made.root)}")
    console.print(f"Next: cd {made.root} && pip install -e . && python -m pytest -q "
                  "(README.md there says how to run it in `cme demo`).")
