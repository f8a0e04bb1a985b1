"""Where the agencies are: each connector's own host (``CME_<NAME>_*``), unless the agency
environment chosen by ``CME_AGENCY_ENVIRONMENT`` serves it (the in-process sandbox of
``CME_SANDBOX_WORLD`` in the demo). The environment is found by name through its entry point
(``connectors.load_environment``), so this module never imports the simulator, and a Dask
worker finds the same environment from the same plain strings."""

from __future__ import annotations

from datetime import date

import httpx

from connectors import AgencyEnvironment, ConnectorSettings, load_environment

__all__ = [
    "agency_transport",
    "chosen_environment",
    "connector_overrides",
    "environment",
    "mendix_transport",
]


def chosen_environment(name: str | None, world: str | None) -> str | None:
    """The agency environment's name: ``CME_AGENCY_ENVIRONMENT``, or ``sandbox`` when only
    ``CME_SANDBOX_WORLD`` is set (the demo's long-standing setting); None: real agencies."""
    if name:
        return name
    return "sandbox" if world else None


def environment(name: str | None, source: str | None) -> AgencyEnvironment | None:
    """The chosen agency environment (None: every connector calls its own agency)."""
    return load_environment(chosen_environment(name, source), source)


def agency_transport(env: AgencyEnvironment | None, connector: str, today: date
                     ) -> httpx.AsyncBaseTransport | None:
    """The environment's transport for ``connector`` if it serves it (None: real HTTP)."""
    if env is None or not env.serves(connector):
        return None
    return env.transport(connector, today)


def connector_overrides(env: AgencyEnvironment | None, connector: str
                        ) -> dict[str, ConnectorSettings] | None:
    """Settings pointing ``connector`` at the environment, if it serves it (None: the
    connector's own ``CME_<NAME>_*`` settings)."""
    if env is None or not env.serves(connector):
        return None
    return {connector: env.connector_settings(connector)}


def mendix_transport(name: str | None, source: str | None) -> httpx.AsyncBaseTransport | None:
    """The chosen agency environment's transport for the Mendix feed (None: real HTTP).
    ``name`` and ``source`` as :func:`environment` (the flow passes the settings' values)."""
    env = environment(name, source)
    return env.mendix_transport() if env is not None else None
