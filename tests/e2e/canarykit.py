"""Canary personal data and a harvest of everything a UI stack shows, for the privacy tests.

A *canary world* is a generated sandbox world whose children carry personal data that
cannot occur by chance: names, streets and emails containing ``zqx``, UPNs with a ``9xx``
serial, postcodes with an inward code starting ``0`` (the generator never uses 0), and the
generated dates of birth (years before the run's own dates). :class:`Scanner` finds any of
them in a text. :func:`harvest` reads back what a stack exposes — Prefect logs, flow and
task runs with their states, deployments, work pool, artifacts, events, the processes'
console logs, result storage and the outbox's ``.eml`` files — as labelled texts to scan.

Imported by name (test folders are not packages), like ``uikit``.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import string
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

#: Every canary name, street and email contains this (no real word does).
MARK = "zqx"
_INWARD = "ABDEFGHJLNPQRSTUWXYZ"


def _suffix(i: int) -> str:
    letters = string.ascii_lowercase
    return letters[(i // 26) % 26] + letters[i % 26]


def _canary_postcode(postcode: str, i: int, slot: int) -> str:
    # Keep the outward code (the housing agency is chosen from it); the inward code starts
    # with 0, which the generator never uses, so no generated postcode collides.
    outward = postcode.split()[0]
    n = i * 4 + slot
    return f"{outward} 0{_INWARD[(n // len(_INWARD)) % len(_INWARD)]}{_INWARD[n % len(_INWARD)]}"


def _canary_upn(upn: str, i: int, malformed: bool) -> str:
    from policy import UPN_ALPHABET, upn_check_letter

    body = f"{upn[1:10]}9{i % 100:02d}"
    good = upn_check_letter(body)
    letter = next(c for c in UPN_ALPHABET if c != good) if malformed else good
    return letter + body


@dataclass(frozen=True)
class ChildCanary:
    """The personal data one canary child carries (everything a leak could show)."""

    world_id: str
    scenario: str
    forename: str
    surname: str
    former_surnames: tuple[str, ...]
    dob: date
    upn: str
    address_line: str
    postcode: str
    parent_name: str
    parent_phone: str
    parent_email: str
    #: Addresses the agencies hold for the child (found by tracing).
    found_postcodes: tuple[str, ...] = ()
    found_lines: tuple[str, ...] = ()


@dataclass
class CanaryWorld:
    """A world (the sandbox's, also the Mendix feed) and the referral file to import."""

    world: Any
    #: Every referral record (the Mendix OData feed serves all of them).
    referrals: list[dict[str, Any]]
    #: The records in ``referrals.jsonl`` (``cme import``): all but ``held_back``.
    import_records: list[dict[str, Any]]
    #: References only the Mendix feed has: the ``intake`` deployment takes them in.
    held_back: list[str]
    by_reference: dict[str, ChildCanary]

    def write(self, folder: Path) -> None:
        from sandbox import write_generated

        write_generated(self.world, self.import_records, folder)

    def references(self, scenario: str) -> list[str]:
        """References of children referred once, in the import file, with this scenario."""
        counts: dict[str, int] = {}
        for c in self.by_reference.values():
            counts[c.world_id] = counts.get(c.world_id, 0) + 1
        return [ref for ref, c in self.by_reference.items()
                if c.scenario == scenario and counts[c.world_id] == 1
                and ref not in self.held_back]

    def scanner(self) -> Scanner:
        return Scanner(self.by_reference.values())


def canary_world(children: int, seed: int, today: date, *, hold_back: int = 2,
                 mendix_password: str | None = None) -> CanaryWorld:
    """Generate a world, then give every child (and what agencies know of them) canaries."""
    from sandbox import generate_world

    world, records = generate_world(children, seed, today=today)
    canaries: dict[tuple[str, str, str], ChildCanary] = {}
    new_children = []
    for i, c in enumerate(world.children, start=1):
        sfx = _suffix(i)
        surname = f"Zqxsur{sfx}"
        parent_surname = surname if c.parent_surname == c.surname else f"Zqxkin{sfx}"
        found: list[tuple[str, str]] = []  # (postcode, line) of addresses agencies hold

        def moved(record: Any, slot: int, sfx: str = sfx, i: int = i,
                  found: list[tuple[str, str]] = found) -> Any:
            pc, line = _canary_postcode(record.postcode, i, slot), f"{slot + 2} Zqxnew{sfx} Close"
            found.append((pc, line))
            return record.model_copy(update={"postcode": pc, "address_line": line})

        other_la = [moved(r, 1 + n) if r.postcode else r for n, r in enumerate(c.other_la)]
        housing = [moved(r, 2) for r in c.housing]
        dwp = moved(c.dwp, 3) if c.dwp is not None else None
        canary = ChildCanary(
            world_id=c.id, scenario=c.scenario, forename=f"Zqxfen{sfx}", surname=surname,
            former_surnames=tuple(f"Zqxold{sfx}" for _ in c.former_surnames), dob=c.dob,
            upn=_canary_upn(c.upn or "", i, c.scenario == "malformed_upn"),
            address_line=f"{i} Zqxlane{sfx} Road", postcode=_canary_postcode(c.postcode or "",
                                                                           i, 0),
            parent_name=f"Zqxpar{sfx} {parent_surname}",
            parent_phone=f"07700 90{i:04d}", parent_email=f"zqxparent{sfx}@example.com",
            found_postcodes=tuple(pc for pc, _ in found),
            found_lines=tuple(line for _, line in found),
        )
        canaries[(c.forename, c.surname, c.dob.isoformat())] = canary
        new_children.append(c.model_copy(update={
            "forename": canary.forename, "surname": canary.surname,
            "former_surnames": list(canary.former_surnames), "upn": canary.upn,
            "address_line": canary.address_line, "postcode": canary.postcode,
            "parent_surname": parent_surname, "other_la": other_la, "housing": housing,
            "dwp": dwp,
        }))
    by_reference: dict[str, ChildCanary] = {}
    for rec in records:
        child = rec["child"]
        canary = canaries[(child["forename"], child["surname"], child["dob"])]
        by_reference[rec["mendix_reference"]] = canary
        child.update(upn=canary.upn, forename=canary.forename, surname=canary.surname,
                     former_surnames=list(canary.former_surnames))
        child["address"] = {**child["address"], "line1": canary.address_line,
                            "postcode": canary.postcode}
        for parent in rec.get("parents") or []:
            parent.update(name=canary.parent_name, phone=canary.parent_phone,
                          email=canary.parent_email)
    # Hold back the newest referrals of children referred once: only the feed has them.
    once = [r["mendix_reference"] for r in records
            if sum(c is by_reference[r["mendix_reference"]] for c in by_reference.values()) == 1]
    held = once[-hold_back:] if hold_back else []
    mendix = world.mendix if mendix_password is None else world.mendix.model_copy(
        update={"password": mendix_password})
    world = world.model_copy(update={"children": new_children, "referrals": records,
                                     "mendix": mendix})
    return CanaryWorld(world=world, referrals=records,
                       import_records=[r for r in records if r["mendix_reference"] not in held],
                       held_back=held, by_reference=by_reference)


# ---- scanning -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Hit:
    source: str
    label: str
    what: str
    context: str

    def __str__(self) -> str:
        return f"{self.source} [{self.label}]: {self.what} in …{self.context}…"


class Scanner:
    """Finds canary values in text, case-insensitively, in the forms a leak would take."""

    def __init__(self, children: Iterable[ChildCanary], *,
                 secrets: Mapping[str, str] | None = None, mark: str | None = MARK) -> None:
        needles: dict[str, str] = {}
        if mark:
            needles[mark] = "canary name/street/email"
        for c in children:
            needles[c.upn.lower()] = f"UPN of {c.world_id}"
            needles[c.upn[1:].lower()] = f"UPN body of {c.world_id}"
            for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d %B %Y"):
                needles[c.dob.strftime(fmt).lower()] = f"DOB of {c.world_id}"
            needles[f"{c.dob.day} {c.dob:%B %Y}".lower()] = f"DOB of {c.world_id}"
            # The case report writes dates as "2 Dec 2026" (issue 15, point 6).
            needles[f"{c.dob.day} {c.dob:%b %Y}".lower()] = f"DOB of {c.world_id}"
            needles[c.dob.strftime("%d %b %Y").lower()] = f"DOB of {c.world_id}"
            for pc in (c.postcode, *c.found_postcodes):
                needles[pc.lower()] = f"postcode of {c.world_id}"
                needles[pc.replace(" ", "").lower()] = f"postcode of {c.world_id}"
            needles[c.parent_phone.lower()] = f"parent phone of {c.world_id}"
            needles[c.parent_phone.replace(" ", "")] = f"parent phone of {c.world_id}"
        for name, value in (secrets or {}).items():
            needles[value.lower()] = f"secret {name}"
        self.needles = needles
        # Longest first, so a UPN is reported as a UPN rather than as its body.
        self._re = re.compile("|".join(re.escape(n) for n in sorted(needles, key=len,
                                                                     reverse=True)))

    def hits(self, source: str, label: str, text: str) -> list[Hit]:
        out = []
        low = text.lower()
        for m in self._re.finditer(low):
            ctx = text[max(0, m.start() - 60): m.end() + 60].replace("\n", " ")
            out.append(Hit(source, label, self.needles[m.group(0)], ctx))
        return out


# ---- harvesting what the stack shows ------------------------------------------------------

@dataclass
class Harvest:
    """Labelled texts by source (``logs``, ``flow_runs``, ``artifacts``, ...)."""

    texts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: case-report artifacts (personal data by design): label → markdown.
    case_reports: dict[str, str] = field(default_factory=dict)

    def add(self, source: str, label: str, text: str) -> None:
        self.texts.setdefault(source, []).append((label, text))

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.texts.items())}

    def scan(self, scanner: Scanner, *, skip: Iterable[str] = ()) -> list[Hit]:
        hits: list[Hit] = []
        for source, items in self.texts.items():
            if source in skip:
                continue
            for label, text in items:
                hits.extend(scanner.hits(source, label, text))
        return hits


def _pages(fetch: Any, size: int = 200) -> list[Any]:
    out: list[Any] = []
    while True:
        page = fetch(limit=size, offset=len(out))
        out.extend(page)
        if len(page) < size:
            return out


def _email_text(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    parts = [f"{k}: {v}" for k, v in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))
    return "\n".join(parts)


def read_events(stack: Any, since: datetime) -> list[dict[str, Any]]:
    """Every event the server stored since ``since`` (all pages)."""
    body = {"filter": {"occurred": {"since": since.isoformat(),
                                    "until": (datetime.now(since.tzinfo) + timedelta(hours=1))
                                    .isoformat()}, "order": "ASC"},
            "limit": 50}
    events: list[dict[str, Any]] = []
    with httpx.Client(auth=stack.http_auth(), timeout=30) as http:
        page = http.post(f"{stack.api_url}/events/filter", json=body)
        page.raise_for_status()
        while True:
            data = page.json()
            events.extend(data["events"])
            if not data.get("next_page"):
                return events
            page = http.get(data["next_page"])
            page.raise_for_status()


def settled_events(stack: Any, since: datetime, *, quiet: float = 6.0,
                   limit: float = 45.0) -> list[dict[str, Any]]:
    """Events once the server has stopped storing new ones (it flushes in batches)."""
    deadline = time.monotonic() + limit
    last = read_events(stack, since)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = read_events(stack, since)
        if len(now) == len(last):
            return now
        last = now
    return last


def harvest(stack: Any, since: datetime) -> Harvest:
    """Everything the stack shows a UI user or an operator, as texts (see module doc)."""
    from prefect import get_client

    h = Harvest()
    with get_client(sync_client=True) as client:
        for log in _pages(lambda **kw: client.read_logs(**kw)):
            h.add("logs", f"log {log.name}", f"{log.name} {log.message}")
        flow_runs = _pages(lambda **kw: client.read_flow_runs(**kw))
        for fr in flow_runs:
            h.add("flow_runs", f"flow run {fr.name}", fr.model_dump_json())
            for st in client.read_flow_run_states(fr.id):
                h.add("states", f"state of {fr.name}", st.model_dump_json())
        for tr in _pages(lambda **kw: client.read_task_runs(**kw)):
            h.add("task_runs", f"task run {tr.name}", tr.model_dump_json())
        report_deployments: set[Any] = set()
        for dep in _pages(lambda **kw: client.read_deployments(**kw)):
            h.add("deployments", f"deployment {dep.name}", dep.model_dump_json())
            if dep.name == "case-report":
                report_deployments.add(dep.id)
        for pool in client.read_work_pools():
            h.add("work_pools", f"work pool {pool.name}", pool.model_dump_json())
        # Case reports: the artifacts of the case-report deployment's runs (they have no key).
        report_runs = {fr.id for fr in flow_runs if fr.deployment_id in report_deployments}
        for art in _pages(lambda **kw: client.read_artifacts(**kw)):
            label = f"artifact {art.key or art.description or art.id}"
            if art.flow_run_id in report_runs:
                h.case_reports[label] = str(art.data)
                continue
            h.add("artifacts", label, art.model_dump_json())
    for ev in settled_events(stack, since):
        h.add("events", f"event {ev.get('event')}", json.dumps(ev))
    for path in sorted(stack.logs.glob("*.log")):
        h.add("console", path.name, path.read_text(encoding="utf-8", errors="replace"))
    storage = stack.prefect_home / "storage"
    if storage.is_dir():
        for path in sorted(p for p in storage.rglob("*") if p.is_file()):
            h.add("result_storage", path.name, path.read_bytes().decode("utf-8", "replace"))
    for path in sorted(stack.outbox.glob("*.eml")):
        h.add("emails", path.name, _email_text(path.read_bytes()))
    return h
