"""Agency environments: where connectors' requests go when not to the agencies themselves.

In production every connector calls its agency's own host (``CME_<NAME>_BASE_URL``). A
trial or a demo may choose an *agency environment* instead — the in-process sandbox is one —
by name (``CME_AGENCY_ENVIRONMENT``). Environments are found through entry points in group
``cme.agency_environments`` (the sandbox registers itself there, as a separate package
could), so a Dask worker in another process finds the same one from the same two plain
strings, and production code never imports the simulator.

An environment serves only the connectors it simulates (:meth:`AgencyEnvironment.serves`):
every other connector keeps its own settings and talks to its own host, so a connector from
another package can run in ``cme demo`` against its own fake agency (docs/connectors.md).
"""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import httpx

from ._errors import RegistryError
from ._settings import ConnectorSettings

__all__ = ["ENVIRONMENT_GROUP", "AgencyEnvironment", "load_environment"]

#: Entry-point group of agency environments: ``name = "module:factory"``, where
#: ``factory(source)`` returns an :class:`AgencyEnvironment` (``source``: e.g. a world file).
ENVIRONMENT_GROUP = "cme.agency_environments"


@runtime_checkable
class AgencyEnvironment(Protocol):
    """A stand-in for some agencies. Methods other than ``serves`` are only asked about
    connectors it serves."""

    def serves(self, connector: str) -> bool:
        """True if this environment answers for ``connector`` (else: its own host)."""
        ...

    def connector_settings(self, connector: str) -> ConnectorSettings:
        """The settings that point ``connector`` at this environment."""
        ...

    def transport(self, connector: str, today: date) -> httpx.AsyncBaseTransport | None:
        """The transport for ``connector`` on the day ``today`` (None: ordinary HTTP to the
        URLs of :meth:`connector_settings`)."""
        ...

    def mendix_transport(self) -> httpx.AsyncBaseTransport | None:
        """The transport for the Mendix referral feed (None: the real feed)."""
        ...


@cache
def _factory(name: str) -> object:
    eps = [ep for ep in entry_points(group=ENVIRONMENT_GROUP) if ep.name == name]
    if not eps:
        known = sorted({ep.name for ep in entry_points(group=ENVIRONMENT_GROUP)})
        raise RegistryError([
            f"agency environment {name!r} is not installed (entry points in group "
            f"{ENVIRONMENT_GROUP}: {', '.join(known) or 'none'})"
        ])
    try:
        return eps[0].load()
    except Exception as exc:  # noqa: BLE001 - reported as one readable problem
        raise RegistryError([f"agency environment {name!r} failed to import: "
                             f"{type(exc).__name__}"]) from exc


def load_environment(name: str | None, source: str | None = None) -> AgencyEnvironment | None:
    """The agency environment registered as ``name``, made from ``source`` (for the sandbox:
    a world file); None when ``name`` is empty (every connector calls its own agency).
    A name that is not installed raises :class:`RegistryError`."""
    if not name:
        return None
    factory = _factory(name)
    if not callable(factory):
        raise RegistryError([f"agency environment {name!r} is not callable"])
    env = factory(source)
    if not isinstance(env, AgencyEnvironment):
        raise RegistryError([f"agency environment {name!r} does not implement "
                             "AgencyEnvironment"])
    return env
