"""Discovery through entry points, explicit enabling, loud failures, per-connector settings."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from connectors import (
    CONTRACT_VERSION,
    ConnectorSettings,
    RegistryError,
    available,
    discover,
    enabled_names,
    load_enabled,
)
from connectors.builtin.other_la import OtherLAConnector, OtherLASettings
from connectors.testing import register_entry_points

BUILTINS = {"other_la", "housing", "lpd", "dwp", "border_force"}

PLUGIN = textwrap.dedent('''
    from connectors import Connector, Result

    class Good(Connector):
        name = "fake_agency"
        version = "1"
        agency = "fake"
        fields = frozenset({"surname"})
        async def search(self, query, http):
            return Result.not_found()

    class OldContract(Good):
        name = "old_contract"
        contract_version = 0

    class NoSearch(Connector):
        name = "no_search"
        version = "1"
        agency = "x"
        fields = frozenset({"surname"})

    class BadField(Good):
        name = "bad_field"
        fields = frozenset({"shoe_size"})

    class NotAConnector:
        name = "not_a_connector"
''')


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "fake_plugin_mod.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("fake_plugin_mod", None)


def test_builtins_are_discovered_through_entry_points() -> None:
    found = discover()
    assert BUILTINS <= set(found)
    assert found["other_la"].cls is OtherLAConnector
    assert found["lpd"].entry_point == "connectors.builtin.lpd:LPDConnector"


def test_a_good_plugin_is_discovered_and_installing_is_not_enabling(
        plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_entry_points(plugin_dir, "fake-plugin", {"fake_agency": "fake_plugin_mod:Good"})
    info = discover()["fake_agency"]
    assert info.package == "fake-plugin" and info.fields == frozenset({"surname"})
    monkeypatch.setenv("CME_CONNECTORS", "lpd")
    assert [c.name for c in load_enabled()] == ["lpd"]


@pytest.mark.parametrize(("entry", "message"), [
    ({"old_contract": "fake_plugin_mod:OldContract"},
     f"contract version 0 != supported {CONTRACT_VERSION}"),
    ({"no_search": "fake_plugin_mod:NoSearch"}, "must implement search"),
    ({"bad_field": "fake_plugin_mod:BadField"}, "unknown fields ['shoe_size']"),
    ({"not_a_connector": "fake_plugin_mod:NotAConnector"}, "not a connectors.Connector"),
    ({"missing": "no_such_module_xyz:Thing"}, "import failed: ModuleNotFoundError"),
    ({"renamed": "fake_plugin_mod:Good"}, "class declares name 'fake_agency'"),
    ({"lpd": "connectors.builtin.lpd:LPDConnector"}, "duplicate connector name 'lpd'"),
], ids=["contract", "no-search", "bad-field", "not-connector", "import", "name", "duplicate"])
def test_problems_are_reported_loudly(plugin_dir: Path, entry: dict[str, str],
                                      message: str) -> None:
    register_entry_points(plugin_dir, "broken-plugin", entry)
    assert any(message in p for p in available().problems)
    with pytest.raises(RegistryError) as err:
        discover()
    assert message in str(err.value) and "broken-plugin" in str(err.value)


def test_enabling_an_unknown_or_repeated_name_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RegistryError, match="'nope' is enabled but not installed"):
        load_enabled(["lpd", "nope"])
    with pytest.raises(RegistryError, match="enabled twice"):
        load_enabled(["lpd", "lpd"])
    monkeypatch.setenv("CME_CONNECTORS", " other_la, housing ,")
    assert enabled_names() == ["other_la", "housing"]
    monkeypatch.delenv("CME_CONNECTORS")
    assert load_enabled() == []


def test_settings_come_from_cme_name_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_LPD_BASE_URL", "https://s2s.test/lpd")
    monkeypatch.setenv("CME_LPD_API_KEY", "s3cret-token")
    monkeypatch.setenv("CME_LPD_TIMEOUT", "3.5")
    monkeypatch.setenv("CME_OTHER_LA_LAS", '{"852": "https://la852.test"}')
    lpd, other = load_enabled(["lpd", "other_la"])
    assert lpd.settings.base_url == "https://s2s.test/lpd" and lpd.settings.timeout == 3.5
    assert "s3cret" not in repr(lpd.settings) and "s3cret" not in str(lpd.settings)
    assert lpd.auth_headers() == {"Authorization": "Bearer s3cret-token"}
    assert isinstance(other.settings, OtherLASettings)
    assert other.allowed_hosts() == frozenset({"la852.test"})


def test_invalid_settings_are_reported_without_their_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_LPD_TIMEOUT", "not-a-number-s3cret")
    with pytest.raises(RegistryError) as err:
        load_enabled(["lpd"])
    assert "CME_LPD_TIMEOUT" in str(err.value) and "s3cret" not in str(err.value)


def test_settings_override_wins() -> None:
    (conn,) = load_enabled(["lpd"], settings={"lpd": ConnectorSettings(base_url="https://x.test")})
    assert conn.allowed_hosts() == frozenset({"x.test"})


def test_importing_connectors_leaves_httpx_logging_alone() -> None:
    # A connector package's process decides its own logging; only the pipeline's flows keep
    # httpx's per-request INFO lines at WARNING.
    import subprocess
    import sys

    code = ("import logging, connectors, connectors.testing; "
            "print(logging.getLogger('httpx').level)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0"
    code = "import logging, flows._config; print(logging.getLogger('httpx').level)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(30)
