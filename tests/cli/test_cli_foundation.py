"""The `cme` command line: help, version, db upgrade, and one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CME = [sys.executable, "-c", "from cme.cli import main; main()"]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("CME_")}
    base.update(env or {})
    base["COLUMNS"] = "200"
    return subprocess.run(
        [*CME, *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = run(["--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    for command in ("version", "db"):
        assert re.search(rf"│ {command}\b", out.stdout), out.stdout


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    out = run(["version"], tmp_path)
    assert out.returncode == 0
    assert version("cme-tracing") in out.stdout


def test_db_upgrade_creates_a_sqlite_file_in_an_empty_folder(tmp_path: Path) -> None:
    out = run(["db", "upgrade"], tmp_path)
    assert out.returncode == 0, out.stderr
    db = tmp_path / "cme.db"
    assert db.exists()
    tables = sa.inspect(sa.create_engine(f"sqlite:///{db}")).get_table_names()
    assert "referral" in tables and "alembic_version" in tables
    current = run(["db", "current"], tmp_path)
    assert "up to date" in current.stdout


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    out = run(
        ["db", "upgrade"],
        tmp_path,
        {"CME_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/cme.db"},
    )
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "CME_DATABASE_URL" in lines[0]
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    out = run(
        ["--debug", "db", "upgrade"],
        tmp_path,
        {"CME_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/cme.db"},
    )
    assert out.returncode != 0
    assert "Traceback" in out.stderr


def test_invalid_setting_names_the_variable(tmp_path: Path) -> None:
    out = run(["db", "upgrade"], tmp_path, {"CME_CHUNK_SIZE": "zero"})
    assert out.returncode == 1
    assert "CME_CHUNK_SIZE" in out.stderr
    assert "Traceback" not in out.stderr


def test_secrets_are_never_printed() -> None:
    s = Settings(smtp_password="hunter2-synthetic", notify_api_key="key-synthetic")  # type: ignore[arg-type]
    text = repr(s) + str(s) + s.model_dump_json()
    assert "hunter2-synthetic" not in text and "key-synthetic" not in text


def test_connectors_setting_splits_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_CONNECTORS", "other_la, housing ,lpd,")
    assert Settings().connectors == ["other_la", "housing", "lpd"]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings-table -->", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `(CME_[A-Z_]+)` \|", table, flags=re.M))
    declared = {"CME_" + name.upper() for name in Settings.model_fields}
    assert declared == documented


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in readme
    assert "<!-- test-command -->" in ci  # CI reads the command from the README
    command = readme.split("<!-- test-command -->", 1)[1].split("```bash\n", 1)[1].split("\n")[0]
    assert "pytest" in command


def test_a_command_module_that_does_not_import_fails_the_cli_loudly() -> None:
    # A missing command module used to be skipped silently, so a whole command group could
    # vanish from `cme --help` with nothing said.
    import pytest

    from cme import cli

    with pytest.raises(ModuleNotFoundError):
        cli._mount("cme.cli_no_such_module", "nothing")
    with pytest.raises(ModuleNotFoundError):
        cli._register("cme.cli_no_such_module")
