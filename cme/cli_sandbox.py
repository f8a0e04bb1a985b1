"""``cme sandbox``: generate a synthetic world, serve the simulated agencies."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="The simulated agencies and synthetic world (never real data).",
                  no_args_is_help=True)


@app.command()
def generate(
    children: int = typer.Option(200, "--children", "-n", min=1, help="Children in the world."),
    seed: int = typer.Option(1, "--seed", help="Random seed (same seed, same world)."),
    out: Path = typer.Option(Path("sandbox-world"), "--out", help="Output folder."),
) -> None:
    """Write world.json and the matching referrals.jsonl (synthetic people only)."""
    from sandbox import generate_world, write_generated

    world, referrals = generate_world(children, seed)
    paths = write_generated(world, referrals, out)
    Console().print(f"world: {paths['world']} ({len(world.children)} children)\n"
                    f"referrals: {paths['referrals']} ({len(referrals)} records)")


@app.command()
def serve(
    world: Path = typer.Option(..., "--world", exists=True, dir_okay=False, help="World JSON."),
    faults: Path = typer.Option(None, "--faults", exists=True, dir_okay=False,
                                help="Fault profile JSON."),
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1."),
    today: str = typer.Option(None, "--today", help="World clock start (YYYY-MM-DD)."),
    request_log: bool = typer.Option(True, "--request-log/--no-request-log",
                                     help="Keep every request (GET /_sandbox/requests); "
                                     "off for long load tests (counts are always kept)."),
) -> None:
    """Serve the sandbox on 127.0.0.1 (uvicorn)."""
    import datetime as dt

    import uvicorn

    from sandbox import Sandbox, connector_env, load_faults, load_world

    w = load_world(world)
    sb = Sandbox(w, load_faults(faults), today=dt.date.fromisoformat(today) if today else None,
                 log_requests=request_log)
    base = f"http://127.0.0.1:{port}"
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"sandbox on {base} (today {sb.clock}); connector environment:")
    for k, v in connector_env(base, world=w).items():
        console.print(f"  {k}={v}" if k != "CME_OTHER_LA_LAS" else f"  {k}='{v}'")
    uvicorn.run(sb.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@app.command()
def env(
    base_url: str = typer.Option("http://127.0.0.1:8765", "--base-url"),
    world: Path = typer.Option(None, "--world", exists=True, dir_okay=False),
) -> None:
    """Print the CME_<NAME>_* settings that point the built-ins at a served sandbox."""
    from sandbox import connector_env, load_world

    w = load_world(world) if world else None
    for k, v in connector_env(base_url, world=w).items():
        typer.echo(f"{k}={json.dumps(v) if k == 'CME_OTHER_LA_LAS' else v}")


@app.command()
def openapi(
    out: Path = typer.Option(Path("sandbox/openapi"), "--out", help="Output folder."),
) -> None:
    """Write the OpenAPI description of each simulated agency, and the world/fault schemas."""
    from sandbox import export_openapi, write_schemas

    for p in export_openapi(out):
        typer.echo(str(p))
    for p in write_schemas(Path("sandbox/worlds") if out == Path("sandbox/openapi") else out):
        typer.echo(str(p))
