"""The ``cme`` command line: the front door for operators and CME officers.

Errors print one clear line and exit non-zero; ``cme --debug ...`` shows the traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

import typer
from pydantic import ValidationError
from rich.console import Console

from cme.errors import CmeError, PipelineError
from flows.settings import Settings, get_settings

app = typer.Typer(
    name="cme",
    help="Children Missing Education tracing pipeline: import referrals, trace children's "
    "whereabouts through other agencies, and keep schools informed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Create or upgrade the case database.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
# soft_wrap: an error is one line, however narrow the terminal (a log keeps it whole).
err_console = Console(stderr=True, soft_wrap=True)
_state = {"debug": False}


def settings() -> Settings:
    """The settings; a wrong one is a :class:`ConfigError` naming it (one line, exit 1)."""
    return get_settings()


_OWN_LOGGERS = ("cme", "connectors", "flows", "tasks", "models", "notifications", "policy",
                "sandbox")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.WARNING)
    if debug:
        # Our own modules only: at DEBUG, third-party clients print credentials (the
        # websockets client logs the Prefect API's auth string when a Secret block is read).
        for name in _OWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)


@app.command("version")
def version_cmd() -> None:
    """Print the installed version of the pipeline."""
    try:
        v = version("cme-tracing")
    except PackageNotFoundError:  # running from a source tree without installing
        v = "unknown (not installed)"
    console.print(f"cme-tracing {v}")


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision (default: the latest)."),
) -> None:
    """Create the database named by CME_DATABASE_URL, or upgrade it to the latest schema."""
    from sqlalchemy.exc import OperationalError

    from models.migrate import current_revision, upgrade

    url = settings().database_url
    try:
        upgrade(url, revision)
        rev = current_revision(url)
    except OperationalError as exc:
        raise CmeError(f"cannot reach the database ({type(exc.orig).__name__}); "
                       "check CME_DATABASE_URL") from exc
    console.print(f"[green]Database is at revision {rev}[/green] ({_safe_url(url)})")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and whether it is up to date."""
    from models.migrate import current_revision, head_revision

    url = settings().database_url
    rev, head = current_revision(url), head_revision()
    state = "up to date" if rev == head else f"behind (latest is {head}); run `cme db upgrade`"
    console.print(f"revision {rev or '(empty database)'}: {state}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _mount(module: str, name: str) -> None:
    """Mount a sub-command group. A module that does not import fails the CLI loudly: a
    command that silently vanished would look to an operator like a typo of theirs."""
    app.add_typer(importlib.import_module(module).app, name=name)


def _register(module: str) -> None:
    """Let a module add top-level commands through its ``register(app)`` function (loudly,
    as :func:`_mount`)."""
    importlib.import_module(module).register(app)


_mount("cme.cli_connectors", "connectors")
_mount("cme.cli_sandbox", "sandbox")
_mount("cme.cli_bench", "bench")
for _module in ("cme.cli_cases", "cme.cli_run", "cme.cli_ui", "cme.cli_export",
                "cme.cli_attendance", "cme.cli_report", "cme.cli_schools"):
    _register(_module)


def main() -> None:
    """Console-script entry point: run the app, turning known errors into one line."""
    debug = "--debug" in sys.argv[1:]
    try:
        app()
    except (PipelineError, ValidationError) as exc:
        if debug:
            raise
        msg = exc if isinstance(exc, PipelineError) else "invalid input"
        err_console.print(f"[red]Error:[/red] {msg}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a CLI user
        if debug:
            raise
        from connectors import RegistryError
        from models.errors import CmeDataError

        # These messages are written for people and never carry personal data.
        if isinstance(exc, CmeDataError | RegistryError):
            err_console.print(f"[red]Error:[/red] {exc}")
        else:
            err_console.print(
                f"[red]Error:[/red] unexpected {type(exc).__name__}; "
                "run again with --debug for details"
            )
        raise SystemExit(1) from None
