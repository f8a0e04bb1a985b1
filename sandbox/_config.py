"""Wiring the built-in connectors to a sandbox, and writing generated files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors import ConnectorSettings, TraceSubject
from connectors.builtin.housing import HousingSettings
from connectors.builtin.other_la import OtherLASettings

from ._generator import HOME_LA, OTHER_LAS
from ._world import FaultProfile, World, WorldChild

__all__ = [
    "connector_env",
    "connector_settings",
    "export_openapi",
    "subject_for",
    "subject_from_referral",
    "write_generated",
    "write_schemas",
]

_PATHS = {"housing": "housing", "lpd": "lpd", "dwp": "dwp", "border_force": "border-force"}


def _la_urls(base_url: str, world: World | None) -> dict[str, str]:
    codes = set(OTHER_LAS)
    if world is not None:
        codes |= {r.la_code for c in world.children for r in c.other_la}
    base = base_url.rstrip("/")
    return {code: f"{base}/la/{code}" for code in sorted(codes)}


def connector_settings(
    base_url: str = "http://sandbox", *, world: World | None = None, **common: Any
) -> dict[str, ConnectorSettings]:
    """Settings for the five built-ins pointing at a sandbox at ``base_url`` (plain http
    allowed). ``common`` applies to each (e.g. ``timeout=0.5``); the in-process rate limit
    is lifted (``rate_limit=10000``) unless ``common`` sets one: the sandbox's own fault
    profile is what throttles."""
    base = base_url.rstrip("/")
    common.setdefault("rate_limit", 10_000.0)
    out: dict[str, ConnectorSettings] = {
        "other_la": OtherLASettings(las=_la_urls(base, world), allow_http=True, **common),
        "housing": HousingSettings(base_url=f"{base}/housing", allow_http=True, **common),
    }
    for name in ("lpd", "dwp", "border_force"):
        out[name] = ConnectorSettings(base_url=f"{base}/{_PATHS[name]}", allow_http=True,
                                      **common)
    return out


def connector_env(base_url: str, *, world: World | None = None) -> dict[str, str]:
    """The ``CME_<NAME>_*`` environment that points the built-ins at a served sandbox."""
    base = base_url.rstrip("/")
    env = {
        "CME_OTHER_LA_LAS": json.dumps(_la_urls(base, world)),
        "CME_HOUSING_BASE_URL": f"{base}/housing",
        "CME_LPD_BASE_URL": f"{base}/lpd",
        "CME_DWP_BASE_URL": f"{base}/dwp",
        "CME_BORDER_FORCE_BASE_URL": f"{base}/border-force",
    }
    for name in ("OTHER_LA", "HOUSING", "LPD", "DWP", "BORDER_FORCE"):
        env[f"CME_{name}_ALLOW_HTTP"] = "true"
        env[f"CME_{name}_RATE_LIMIT"] = "10000"  # the sandbox's faults do the throttling
    return env


def write_generated(world: World, referrals: list[dict[str, Any]], out: str | Path) -> dict[
        str, Path]:
    """Write ``world.json`` and ``referrals.jsonl`` into ``out``; return their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    world_path = folder / "world.json"
    world_path.write_text(world.model_dump_json(indent=1), encoding="utf-8")
    ref_path = folder / "referrals.jsonl"
    with ref_path.open("w", encoding="utf-8") as fh:
        for rec in referrals:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return {"world": world_path, "referrals": ref_path}


def export_openapi(out: str | Path) -> list[Path]:
    """Write one OpenAPI document per simulated agency (by tag) and JSON schemas."""
    from ._app import Sandbox

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    spec = Sandbox(World(today="2026-01-01")).app.openapi()
    written = []
    for tag in ("other_la", "housing", "lpd", "dwp", "border_force", "mendix"):
        paths = {
            p: {m: op for m, op in ops.items() if tag in op.get("tags", [])}
            for p, ops in spec["paths"].items()
        }
        paths = {p: ops for p, ops in paths.items() if ops}
        doc = {**spec, "paths": paths,
               "info": {**spec["info"], "title": f"Simulated agency API: {tag}"}}
        path = folder / f"{tag}.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def write_schemas(out: str | Path) -> list[Path]:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, model in (("world", World), ("faults", FaultProfile)):
        path = folder / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=1) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def subject_for(child: WorldChild, reference: str | None = None) -> TraceSubject:
    """The trace subject the pipeline would build for a world child."""
    return TraceSubject(
        reference=reference or child.id, upn=child.upn, forename=child.forename,
        surname=child.surname, former_surnames=tuple(child.former_surnames), dob=child.dob,
        sex=child.sex, postcode=child.postcode, address_line=child.address_line,
        town=child.town, home_la=HOME_LA, parent_surname=child.parent_surname,
        nhs_number=child.nhs_number,
    )


def subject_from_referral(record: dict[str, Any]) -> TraceSubject:
    """The trace subject for a referral record (the JSON Lines shape)."""
    child = record["child"]
    address = child.get("address") or {}
    parents = record.get("parents") or []
    parent_surname = None
    if parents and parents[0].get("name"):
        parent_surname = str(parents[0]["name"]).split()[-1]
    return TraceSubject(
        reference=record["mendix_reference"], upn=child.get("upn"),
        forename=child.get("forename"), surname=child.get("surname"),
        former_surnames=tuple(child.get("former_surnames") or ()), dob=child.get("dob"),
        sex=child.get("sex"), postcode=address.get("postcode"),
        address_line=address.get("line1"), town=address.get("town"),
        last_school_urn=(record.get("school") or {}).get("urn"),
        home_la=(record.get("school") or {}).get("la_code"),
        parent_surname=parent_surname, nhs_number=child.get("nhs_number"),
    )
