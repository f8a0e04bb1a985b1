"""Issue 16, point 2: the simulator plugs in. Production code never imports `sandbox`; the
sandbox is an agency environment found by name through an entry point, and it serves only
its own agencies (the demo test in test_conn_template.py runs an outside connector)."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import httpx
import pytest

from connectors import AgencyEnvironment, RegistryError, load_environment

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("flows", "tasks", "connectors", "notifications", "models", "policy")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_no_production_module_imports_the_simulator() -> None:
    offenders = [str(p.relative_to(ROOT)) for folder in PRODUCTION
                 for p in (ROOT / folder).rglob("*.py") if "sandbox" in _imports(p)]
    assert offenders == []


def test_the_sandbox_is_found_by_name_and_serves_only_the_builtins(tmp_path: Path) -> None:
    from sandbox import generate_world, write_generated

    world, referrals = generate_world(5, 3, today=date(2026, 3, 2))
    paths = write_generated(world, referrals, tmp_path)
    env = load_environment("sandbox", str(paths["world"]))
    assert isinstance(env, AgencyEnvironment)
    for name in ("other_la", "housing", "lpd", "dwp", "border_force"):
        assert env.serves(name)
        assert isinstance(env.transport(name, date(2026, 3, 2)), httpx.ASGITransport)
        assert env.connector_settings(name).allow_http
    assert not env.serves("gp_registration")
    assert not env.serves("health_visitor")


def test_the_night_wires_an_outside_connector_to_its_own_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox import generate_world, write_generated
    from tasks.tracing import wired_connector

    world, referrals = generate_world(5, 3, today=date(2026, 3, 2))
    paths = write_generated(world, referrals, tmp_path)
    monkeypatch.setenv("CME_HEALTH_VISITOR_BASE_URL", "https://hv.example.test/api")
    outside, transport = wired_connector("health_visitor", date(2026, 3, 2),
                                         agency_environment=None,
                                         sandbox_world=str(paths["world"]))
    assert transport is None  # real HTTP, to the connector's own host
    assert outside.settings.base_url == "https://hv.example.test/api"
    builtin, transport = wired_connector("lpd", date(2026, 3, 2), agency_environment=None,
                                         sandbox_world=str(paths["world"]))
    assert isinstance(transport, httpx.ASGITransport)
    assert builtin.settings.base_url == "http://sandbox/lpd"


def test_no_environment_means_the_real_agencies_and_an_unknown_one_is_refused() -> None:
    assert load_environment(None) is None
    with pytest.raises(RegistryError, match="'nowhere' is not installed.*sandbox"):
        load_environment("nowhere")
