"""``cme connectors``: what connectors are installed and enabled, and are they healthy."""

from __future__ import annotations

import asyncio
import json

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
) -> None:
    """Health probe of each enabled connector (configuration and agency reachability)."""
    console = Console()
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
