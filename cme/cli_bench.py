"""``cme bench``: the benchmarks in ``bench/`` (run from a checkout; they measure, never
assert)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from cme.errors import CmeError

app = typer.Typer(help="Benchmarks (from a checkout): see README, 'Performance'.",
                  no_args_is_help=True)


@app.command("nightly", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def nightly(ctx: typer.Context) -> None:
    """One night's tracing vs a plain asyncio+httpx baseline vs the physical bound.

    Every option is passed to bench/nightly.py (`cme bench nightly --help` lists them):
    --n, --scale, --latency-ms, --concurrency, --runners, --postgres, --chunk-size, ...
    """
    script = Path(__file__).resolve().parent.parent / "bench" / "nightly.py"
    if not script.is_file():
        raise CmeError("bench/nightly.py is not here: run `cme bench` from a checkout")
    code = subprocess.call([sys.executable, str(script), *ctx.args])  # noqa: S603
    raise typer.Exit(code)
