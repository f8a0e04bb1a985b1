"""The sandbox as an agency environment (entry point ``sandbox`` in group
``cme.agency_environments``): the five built-in agencies and the Mendix feed, simulated in
process from a world file. Other connectors are not served: they keep their own hosts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx

from connectors import ConnectorSettings

from ._app import Sandbox, asgi_transport
from ._config import connector_settings
from ._world import load_world

__all__ = ["SANDBOX_BASE", "SandboxEnvironment", "clear_sandboxes", "sandbox_for"]

SANDBOX_BASE = "http://sandbox"
#: The connectors the sandbox simulates (``sandbox._config.connector_settings``).
SERVED = frozenset({"other_la", "housing", "lpd", "dwp", "border_force"})
_SANDBOXES: dict[str, Sandbox] = {}


def sandbox_for(world_path: str | Path) -> Sandbox:
    """One in-process sandbox per world file per process (its request log and clock)."""
    key = str(Path(world_path).resolve())
    if key not in _SANDBOXES:
        _SANDBOXES[key] = Sandbox(load_world(key))
    return _SANDBOXES[key]


def clear_sandboxes() -> None:
    """Forget the in-process sandboxes (tests that write a new world at the same path)."""
    _SANDBOXES.clear()


class SandboxEnvironment:
    """The in-process sandbox of one world file, serving the built-in agencies only."""

    def __init__(self, world_path: str | Path | None) -> None:
        if not world_path:
            raise ValueError("the sandbox agency environment needs a world file "
                             "(CME_SANDBOX_WORLD)")
        self.sandbox = sandbox_for(world_path)
        self._settings = connector_settings(SANDBOX_BASE, world=self.sandbox.world)

    def serves(self, connector: str) -> bool:
        return connector in SERVED

    def connector_settings(self, connector: str) -> ConnectorSettings:
        return self._settings[connector]

    def transport(self, connector: str, today: date) -> httpx.AsyncBaseTransport:
        self.sandbox.today = today
        return asgi_transport(self.sandbox)

    def mendix_transport(self) -> httpx.AsyncBaseTransport:
        return asgi_transport(self.sandbox)
