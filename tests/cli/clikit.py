"""Running the ``cme`` CLI in process against a seeded test database.

Imported by name (test folders are not packages): ``from tests.cli.clikit import ...``.
"""

from __future__ import annotations

from click.testing import Result
from typer.testing import CliRunner

from cme.cli import app

__all__ = ["cli_env", "cme", "runner"]

runner = CliRunner()


def cli_env(db_url: str, *, columns: int = 200) -> dict[str, str]:
    """The environment for a CLI run against ``db_url``; ``columns`` wide enough that the
    tables a test reads do not wrap."""
    return {"CME_DATABASE_URL": db_url, "COLUMNS": str(columns)}


def cme(env: dict[str, str], *args: str) -> Result:
    """``cme ARGS`` in process; the test fails, showing the output, unless it exits 0."""
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result
