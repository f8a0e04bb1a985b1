"""Where the agencies are: the real ones (connector settings from ``CME_<NAME>_*``) or the
sandbox simulated in-process from a world file (``CME_SANDBOX_WORLD``, the demo)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx

from connectors import ConnectorSettings

__all__ = ["agency_transport", "connector_overrides", "mendix_transport", "sandbox_for"]

SANDBOX_BASE = "http://sandbox"
_SANDBOXES: dict[str, object] = {}


def sandbox_for(world_path: str | Path):  # type: ignore[no-untyped-def]
    """One in-process sandbox per world file per process (its request log and clock)."""
    from sandbox import Sandbox, load_world

    key = str(Path(world_path).resolve())
    if key not in _SANDBOXES:
        _SANDBOXES[key] = Sandbox(load_world(key))
    return _SANDBOXES[key]


def agency_transport(world_path: str | None, today: date) -> httpx.AsyncBaseTransport | None:
    """The in-process sandbox's transport with its clock set to ``today`` (None: real HTTP)."""
    if not world_path:
        return None
    from sandbox import asgi_transport

    sb = sandbox_for(world_path)
    sb.today = today
    return asgi_transport(sb)


def connector_overrides(world_path: str | None) -> dict[str, ConnectorSettings] | None:
    if not world_path:
        return None
    from sandbox import connector_settings

    return connector_settings(SANDBOX_BASE, world=sandbox_for(world_path).world)


def mendix_transport() -> httpx.AsyncBaseTransport | None:
    from cme.settings import get_settings

    world = get_settings().sandbox_world
    if world is None:
        return None
    from sandbox import asgi_transport

    return asgi_transport(sandbox_for(world))
