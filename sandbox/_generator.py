"""A consistent synthetic world + the matching school referrals, from a seed.

Synthetic people only (Faker ``en_GB``, seeded). Every child gets a scenario (what the
agencies will say); the referral file also holds a few not-CME referrals, a few malformed
ones (bad UPN check letter) and one duplicate referral of the same child.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from faker import Faker

from ._world import (
    BorderForceRecord,
    CTFRecord,
    DWPRecord,
    HousingRecord,
    LARecord,
    Movement,
    World,
    WorldChild,
)

__all__ = ["HOME_LA", "OTHER_LAS", "SCENARIOS", "generate_world"]

HOME_LA = "850"

#: Neighbouring and further LAs the world uses (code → name).
OTHER_LAS: dict[str, str] = {
    "851": "Portsmouth", "852": "Southampton", "921": "Isle of Wight", "838": "Dorset",
    "839": "Bournemouth, Christchurch and Poole", "865": "Wiltshire", "869": "West Berkshire",
    "936": "Surrey", "938": "West Sussex",
}

#: Hampshire towns: (council slug, postcode outward codes).
TOWNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Basingstoke": ("basingstoke-deane", ("RG21", "RG22", "RG24")),
    "Tadley": ("basingstoke-deane", ("RG26",)),
    "Alton": ("east-hampshire", ("GU34",)),
    "Petersfield": ("east-hampshire", ("GU31", "GU32")),
    "Eastleigh": ("eastleigh", ("SO50",)),
    "Chandler's Ford": ("eastleigh", ("SO53",)),
    "Fareham": ("fareham", ("PO14", "PO15", "PO16")),
    "Gosport": ("gosport", ("PO12", "PO13")),
    "Fleet": ("hart", ("GU51", "GU52")),
    "Havant": ("havant", ("PO9",)),
    "Waterlooville": ("havant", ("PO7", "PO8")),
    "Lymington": ("new-forest", ("SO41",)),
    "Ringwood": ("new-forest", ("BH24",)),
    "Totton": ("new-forest", ("SO40",)),
    "Aldershot": ("rushmoor", ("GU11", "GU12")),
    "Farnborough": ("rushmoor", ("GU14",)),
    "Andover": ("test-valley", ("SP10", "SP11")),
    "Romsey": ("test-valley", ("SO51",)),
    "Winchester": ("winchester", ("SO22", "SO23")),
}

OTHER_LA_TOWNS: dict[str, tuple[str, str]] = {
    "851": ("Portsmouth", "PO4"), "852": ("Southampton", "SO15"), "921": ("Newport", "PO30"),
    "838": ("Dorchester", "DT1"), "839": ("Bournemouth", "BH1"), "865": ("Salisbury", "SP1"),
    "869": ("Newbury", "RG14"), "936": ("Guildford", "GU1"), "938": ("Chichester", "PO19"),
}

COUNTRIES = ("PL", "RO", "ES", "PT", "IE", "IN", "PK", "NG", "LT", "BG", "FR", "US")

#: Scenario → weight. Each appears at least once when there are enough children.
SCENARIOS: dict[str, int] = {
    "on_roll_other_la": 16, "resident_other_la": 11, "left_uk": 10, "housing_in_area": 11,
    "lpd_xxx_only": 9, "nothing": 13, "dwp_deferred": 10, "safeguarding": 5,
    "over_age": 3, "rhp": 3, "malformed_upn": 3,
}

_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_KINDS = ("Primary School", "Infant School", "Junior School", "Church of England Primary "
          "School", "Academy", "School", "Community School")


@dataclass(frozen=True)
class _School:
    urn: str
    estab: str
    name: str
    town: str
    email: str


def _check_letter(body: str) -> str:
    from policy import upn_check_letter

    return upn_check_letter(body)


class _Gen:
    def __init__(self, seed: int, today: date) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("en_GB")
        self.fake.seed_instance(seed)
        self.today = today
        self.upns: set[str] = set()
        self.serial = 0
        self.urns: set[str] = set()

    def postcode(self, outward: str) -> str:
        r = self.rng
        return f"{outward} {r.randint(1, 9)}{r.choice(_INWARD_LETTERS)}{r.choice(_INWARD_LETTERS)}"

    def street(self) -> str:
        return f"{self.rng.randint(1, 180)} {self.fake.street_name()}"

    def urn(self, lo: int, hi: int) -> str:
        while True:
            u = str(self.rng.randint(lo, hi))
            if u not in self.urns:
                self.urns.add(u)
                return u

    def schools(self, n: int) -> list[_School]:
        out = []
        estabs: set[str] = set()
        for _ in range(n):
            town = self.rng.choice(list(TOWNS))
            kind = self.rng.choice(_KINDS)
            secondary = kind in ("Academy", "School", "Community School")
            while True:
                estab = str(self.rng.randint(4000, 4699) if secondary else
                            self.rng.randint(2000, 3699))
                if estab not in estabs:
                    estabs.add(estab)
                    break
            academy = kind == "Academy"
            urn = self.urn(136000, 149999) if academy else self.urn(115000, 116999)
            name = f"{self.fake.last_name()} {kind}" if self.rng.random() < 0.5 else \
                f"{town} {kind}"
            slug = "".join(ch for ch in name.lower() if ch.isalnum())[:20]
            out.append(_School(urn, estab, name, town, f"admin@{slug}.hants.sch.example"))
        return out

    def upn(self, school: _School, entry_year: int) -> str:
        while True:
            self.serial += 1
            body = f"{HOME_LA}{school.estab}{entry_year % 100:02d}{self.serial % 1000:03d}"
            upn = _check_letter(body) + body
            if upn not in self.upns:
                self.upns.add(upn)
                return upn

    def dob(self, age_lo: float, age_hi: float) -> date:
        days = self.rng.randint(int(age_lo * 365.25), int(age_hi * 365.25))
        return self.today - timedelta(days=days)


#: Schools a world of any size draws from: about one per 15 children, at most
#: MAX_SCHOOLS (a county has some 500). The DfE establishment numbers the generator draws
#: from hold 700 secondary and 1,700 primary schools, so an uncapped count would run out of
#: them — a world of 50,000 children never finished generating.
MAX_SCHOOLS = 800


def school_count(children: int) -> int:
    return min(max(12, children // 15), MAX_SCHOOLS)


def _scenarios(n: int, rng: random.Random) -> list[str]:
    names = list(SCENARIOS)
    base = names[:] if n >= len(names) else []
    rest = rng.choices(names, weights=[SCENARIOS[s] for s in names], k=n - len(base))
    out = base + rest
    rng.shuffle(out)
    return out


def generate_world(
    children: int, seed: int, *, today: date = date(2026, 3, 2)
) -> tuple[World, list[dict[str, Any]]]:
    """A world of ``children`` synthetic children and their referral records.

    Deterministic in ``(children, seed, today)``. Returns the world (its ``referrals`` are
    also the Mendix source's records) and the referral records (JSON-ready dicts, the JSON
    Lines file's lines, in received order).
    """
    g = _Gen(seed, today)
    r = g.rng
    schools = g.schools(school_count(children))
    scenarios = _scenarios(children, r)
    kids: list[WorldChild] = []
    referrals: list[dict[str, Any]] = []
    for i, scenario in enumerate(scenarios, start=1):
        child, referral = _child(g, i, scenario, r.choice(schools))
        kids.append(child)
        referrals.append(referral)
    if len(kids) >= 2:
        # the same child referred again by another school, a few days later
        orig = next((x for x in referrals if x["_scenario"] in ("nothing", "lpd_xxx_only",
                                                                "resident_other_la")),
                    referrals[0])
        dup = _json_copy(orig)
        dup["school"] = _school_json(r.choice(schools))
        received = datetime.fromisoformat(orig["received_at"]) + timedelta(days=2, hours=3)
        dup["received_at"] = dup["changed_at"] = _iso(received)
        dup["_scenario"] = "duplicate_referral"
        referrals.append(dup)
    referrals.sort(key=lambda x: x["received_at"])
    for n, rec in enumerate(referrals, start=1):
        rec["mendix_reference"] = f"CME-{today.year}-{n:06d}"
    clean = [{k: v for k, v in rec.items() if not k.startswith("_")} for rec in referrals]
    world = World(seed=seed, today=today, children=kids, referrals=clean)
    return world, clean


def _json_copy(d: dict[str, Any]) -> dict[str, Any]:
    import json

    out: dict[str, Any] = json.loads(json.dumps(d))
    return out


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _school_json(s: _School) -> dict[str, Any]:
    return {"urn": s.urn, "name": s.name, "la_code": HOME_LA, "email": s.email}


def _child(g: _Gen, i: int, scenario: str, school: _School) -> tuple[WorldChild,
                                                                     dict[str, Any]]:
    r, fake, today = g.rng, g.fake, g.today
    sex = r.choice("FM")
    forename = fake.first_name_female() if sex == "F" else fake.first_name_male()
    surname = fake.last_name()
    former = [fake.last_name()] if r.random() < 0.08 else []
    dob = g.dob(17.2, 17.8) if scenario == "over_age" else g.dob(5.6, 15.3)
    entry_year = dob.year + 5
    upn = g.upn(school, entry_year)
    if scenario == "malformed_upn":
        good = upn[0]
        upn = next(c for c in "ABCDEFGHJKLMNPQRTUVWXYZ" if c != good) + upn[1:]
    town = r.choice(list(TOWNS))
    council, outwards = TOWNS[town]
    postcode = g.postcode(r.choice(outwards))
    address = g.street()
    parent_surname = surname if r.random() < 0.8 else fake.last_name()
    last_attended = today - timedelta(days=r.randint(12, 60))
    left_on = last_attended + timedelta(days=r.randint(1, 5))
    child = WorldChild(
        id=f"W{i:05d}", scenario=scenario, upn=upn, forename=forename, surname=surname,
        former_surnames=former, dob=dob, sex=sex, address_line=address, town=town,
        postcode=postcode, parent_surname=parent_surname,
        nhs_number=None,
    )
    other = r.choice(list(OTHER_LAS))
    other_town, other_out = OTHER_LA_TOWNS[other]
    since = left_on + timedelta(days=r.randint(3, 10))
    if scenario in ("on_roll_other_la", "safeguarding"):
        child.other_la.append(LARecord(la_code=other, kind="on_roll",
                                       school_urn=g.urn(100000, 149999), since=since,
                                       safeguarding=scenario == "safeguarding"))
        child.lpd.append(CTFRecord(source_estab=school.estab, dest_la=other,
                                   dest_estab=str(r.randint(2000, 4999)), leaving_date=left_on))
    elif scenario == "resident_other_la":
        child.other_la.append(LARecord(la_code=other, kind="resident", since=since,
                                       address_line=g.street(),
                                       postcode=g.postcode(other_out)))
    elif scenario == "left_uk":
        child.border_force = BorderForceRecord(
            movements=[Movement(direction="departure", date=left_on,
                                country=r.choice(COUNTRIES), port=r.choice(["LHR", "LGW",
                                                                            "STN", "SOU"]))],
            answer_after_days=1)
        child.lpd.append(CTFRecord(source_estab=school.estab, dest_la="MMM", dest_estab="MMMM",
                                   leaving_date=left_on))
    elif scenario == "housing_in_area":
        new_town = r.choice([t for t in TOWNS if t != town])
        new_council, new_out = TOWNS[new_town]
        child.housing.append(HousingRecord(
            council=new_council, address_type="current", address_line=g.street(),
            town=new_town, postcode=g.postcode(r.choice(new_out)), la_code=HOME_LA,
            recorded_on=since))
    elif scenario == "lpd_xxx_only":
        child.lpd.append(CTFRecord(source_estab=school.estab, dest_la="XXX", dest_estab="XXXX",
                                   leaving_date=left_on))
    elif scenario == "dwp_deferred":
        child.dwp = DWPRecord(address_line=g.street(), town=other_town,
                              postcode=g.postcode(other_out), la_code=other, recorded_on=since,
                              answer_after_days=1)
    # on roll only for the RHP referral: the others are CME (off roll) so each scenario
    # is traced and ends as its name says
    on_roll = scenario == "rhp"
    received = datetime.combine(today - timedelta(days=r.randint(1, 6)),
                                time(r.randint(8, 16), r.randint(0, 59)), tzinfo=UTC)
    actions_all = ["phone_parents", "email_letter_or_visit", "contact_other_schools",
                   "ask_peers", "contact_agencies"]
    actions = actions_all if r.random() < 0.8 else r.sample(actions_all, k=r.randint(1, 3))
    referral: dict[str, Any] = {
        "mendix_reference": "",
        "kind": "PMOOE" if on_roll else "CME",
        "received_at": _iso(received),
        "school": _school_json(school),
        "child": {
            "upn": upn, "forename": forename, "surname": surname, "former_surnames": former,
            "dob": dob.isoformat(), "sex": sex, "nhs_number": None,
            "address": {"line1": address, "town": town, "postcode": postcode},
        },
        "parents": [{
            "name": f"{fake.first_name()} {parent_surname}",
            "relationship": r.choice(["mother", "father", "carer"]),
            "phone": f"07700 9{r.randint(0, 99999):05d}",
            "email": f"parent{i}@example.com" if r.random() < 0.7 else None,
        }],
        "reason": ("Attending part-time under reduced hours provision" if scenario == "rhp"
                   else r.choice(["Family moved, new school not known",
                                  "Not returned after holiday", "No contact with family",
                                  "Continuous absence, home visit found property empty"])),
        "last_attended": last_attended.isoformat(),
        "on_roll": on_roll,
        "education_otherwise": None,
        "reduced_hours": scenario == "rhp",
        "school_actions": [
            {"action": a, "date": (last_attended + timedelta(days=k + 1)).isoformat()}
            for k, a in enumerate(actions)
        ],
        "safeguarding_concern": scenario == "safeguarding" and r.random() < 0.5,
        "service_child": r.random() < 0.05,
        "changed_at": _iso(received + timedelta(minutes=r.randint(0, 30))),
        "_scenario": scenario,
    }
    return child, referral
