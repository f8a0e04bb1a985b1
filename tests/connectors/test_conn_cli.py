"""`cme connectors list` / `check`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cme.cli_connectors import app


def test_list_shows_the_builtins_and_the_example_and_no_secrets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_CONNECTORS", "other_la,lpd")
    monkeypatch.setenv("CME_LPD_API_KEY", "s3cret-token")
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)["connectors"]}
    assert {"other_la", "housing", "lpd", "dwp", "border_force", "health_visitor"} <= set(rows)
    assert rows["lpd"]["enabled"] and not rows["housing"]["enabled"]
    assert rows["lpd"]["fields"] == ["dob", "forename", "surname", "upn"]
    assert rows["health_visitor"]["package"].startswith("cme-connector-example")
    table = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "border_force" in table.output
    assert "s3cret" not in result.output + table.output


def test_list_fails_when_an_enabled_connector_is_not_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_CONNECTORS", "other_la,ghost")
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "ghost" in result.output


def test_check_reports_unconfigured_connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CME_LPD_BASE_URL", raising=False)
    result = CliRunner().invoke(app, ["check", "lpd"], env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "not_configured" in result.output
