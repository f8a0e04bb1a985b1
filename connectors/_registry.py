"""Discover connectors through entry points (group ``cme.connectors``) and enable them.

Installing a package makes a connector *available*; ``CME_CONNECTORS`` makes it *enabled*.
Every problem (duplicate names, import failures, contract-version mismatches, bad
declarations, unknown names asked for) is collected and raised together as a
:class:`RegistryError` — nothing is skipped quietly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from pydantic import ValidationError

from ._contract import Connector
from ._errors import RegistryError
from ._settings import ConnectorSettings, RegistrySettings, env_prefix

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConnectorInfo",
    "Discovery",
    "available",
    "discover",
    "enabled_names",
    "load_enabled",
]

ENTRY_POINT_GROUP = "cme.connectors"


@dataclass(frozen=True)
class ConnectorInfo:
    """A discovered connector class and where it came from."""

    name: str
    cls: type[Connector]
    entry_point: str
    package: str
    package_version: str

    @property
    def version(self) -> str:
        return self.cls.version

    @property
    def agency(self) -> str:
        return self.cls.agency

    @property
    def fields(self) -> frozenset[str]:
        return self.cls.fields

    @property
    def deferred(self) -> bool:
        return self.cls.deferred

    @property
    def official(self) -> bool:
        return self.cls.official


@dataclass(frozen=True)
class Discovery:
    connectors: dict[str, ConnectorInfo]
    problems: list[str]


def _source(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("?", "?")
    return (dist.metadata["Name"] or "?", dist.version or "?")


def available() -> Discovery:
    """Everything in the entry-point group, with every problem found (does not raise)."""
    found: dict[str, ConnectorInfo] = {}
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        package, pversion = _source(ep)
        key = (ep.name, ep.value, package)
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        where = f"entry point {ep.name!r} = {ep.value!r} (package {package})"
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - report, never skip silently
            problems.append(f"{where}: import failed: {type(exc).__name__}: {exc}")
            continue
        if not (isinstance(obj, type) and issubclass(obj, Connector)):
            problems.append(f"{where}: is not a connectors.Connector subclass")
            continue
        declared = obj.contract_problems()
        if declared:
            problems.extend(f"{where}: {p}" for p in declared)
            continue
        if obj.name != ep.name:
            problems.append(f"{where}: class declares name {obj.name!r}; they must match")
            continue
        if ep.name in found:
            other = found[ep.name]
            problems.append(
                f"duplicate connector name {ep.name!r}: {other.entry_point} (package "
                f"{other.package}) and {ep.value} (package {package})"
            )
            continue
        found[ep.name] = ConnectorInfo(ep.name, obj, ep.value, package, pversion)
    return Discovery(found, problems)


def discover() -> dict[str, ConnectorInfo]:
    """Available connectors by name; raises :class:`RegistryError` listing every problem."""
    d = available()
    if d.problems:
        raise RegistryError(d.problems)
    return d.connectors


def enabled_names() -> list[str]:
    """The names in ``CME_CONNECTORS`` (comma-separated), in order."""
    return list(RegistrySettings().connectors)


def load_enabled(
    names: list[str] | None = None,
    *,
    settings: Mapping[str, ConnectorSettings] | None = None,
) -> list[Connector]:
    """Instantiate the enabled connectors (``names``, else ``CME_CONNECTORS``), in order.

    ``settings`` overrides a connector's settings by name (otherwise each reads its own
    ``CME_<NAME>_*`` environment). Unknown or repeated names raise :class:`RegistryError`.
    """
    wanted = enabled_names() if names is None else list(names)
    catalogue = discover()
    problems: list[str] = []
    seen: set[str] = set()
    for name in wanted:
        if name in seen:
            problems.append(f"connector {name!r} enabled twice")
        seen.add(name)
        if name not in catalogue:
            problems.append(
                f"connector {name!r} is enabled but not installed (available: "
                f"{', '.join(sorted(catalogue)) or 'none'})"
            )
    if problems:
        raise RegistryError(problems)
    out: list[Connector] = []
    for name in wanted:
        cls = catalogue[name].cls
        override = (settings or {}).get(name)
        try:
            out.append(cls(override) if override is not None else cls())
        except ValidationError as exc:
            # never the input value: it may be a secret
            detail = "; ".join(
                f"{env_prefix(name)}{str(e['loc'][0]).upper() if e['loc'] else '?'}: {e['msg']}"
                for e in exc.errors()
            )
            problems.append(f"connector {name!r}: invalid settings: {detail}")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"connector {name!r}: could not start: {type(exc).__name__}")
    if problems:
        raise RegistryError(problems)
    return out
