"""Make the built-ins (and the example package) discoverable through their entry points
even before the project is reinstalled with the entry points in pyproject.toml.

A test folder that needs them imports :func:`connector_entry_points` into its
``conftest.py``; the fixture is autouse, so importing it is enough.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from connectors.testing import register_entry_points

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cme-connector-example"


def _builtin_lines() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return dict(meta["project"]["entry-points"]["cme.connectors"])


@pytest.fixture(scope="session", autouse=True)
def connector_entry_points(tmp_path_factory: pytest.TempPathFactory) -> None:
    names = {ep.name for ep in entry_points(group="cme.connectors")}
    builtins = _builtin_lines()
    if not set(builtins) <= names:
        register_entry_points(tmp_path_factory.mktemp("ep-builtin"), "cme-tracing-builtins-shim",
                              {k: v for k, v in builtins.items() if k not in names})
    if "health_visitor" not in names and EXAMPLE.exists():
        meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
        eps = meta["project"]["entry-points"]["cme.connectors"]
        register_entry_points(tmp_path_factory.mktemp("ep-example"), meta["project"]["name"],
                              eps, import_paths=(str(EXAMPLE / "src"),),
                              version=meta["project"]["version"])
