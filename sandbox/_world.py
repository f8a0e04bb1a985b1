"""The world file and the fault profile: what the simulated agencies know, and how they fail.

JSON schemas: ``sandbox/worlds/world.schema.json`` and ``sandbox/worlds/faults.schema.json``
(regenerate with ``cme sandbox schema``).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AGENCIES",
    "AgencyFaults",
    "BorderForceRecord",
    "CTFRecord",
    "DWPRecord",
    "FaultProfile",
    "HousingRecord",
    "LARecord",
    "MendixSource",
    "Movement",
    "World",
    "WorldChild",
    "load_faults",
    "load_world",
]

#: Agency keys used by fault profiles, the request log and path prefixes.
AGENCIES = ("other_la", "housing", "lpd", "dwp", "border_force", "mendix")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LARecord(_Model):
    """Another LA knows the child: on a school roll there, or resident there."""

    la_code: str = Field(pattern=r"^\d{3}$")
    kind: Literal["on_roll", "resident"]
    school_urn: str | None = Field(default=None, pattern=r"^\d{6}$")
    address_line: str | None = None
    postcode: str | None = None
    since: date
    safeguarding: bool = False


class HousingRecord(_Model):
    """A district/borough council holds a current or forwarding address."""

    council: str = Field(description="Council slug, e.g. 'eastleigh'.")
    address_type: Literal["current", "forwarding"]
    address_line: str
    town: str
    postcode: str
    la_code: str = Field(pattern=r"^\d{3}$")
    recorded_on: date
    safeguarding: bool = False


class CTFRecord(_Model):
    """A CTF on the Lost Pupil Database: where the pupil left from and to."""

    source_la: str = "850"
    source_estab: str = Field(pattern=r"^\d{4}$")
    dest_la: str = Field(pattern=r"^(\d{3}|XXX|MMM)$")
    dest_estab: str = Field(pattern=r"^(\d{4}|XXXX|MMMM)$")
    leaving_date: date


class DWPRecord(_Model):
    """The address DWP holds; answered ``answer_after_days`` after the request is filed."""

    address_line: str
    town: str
    postcode: str
    la_code: str = Field(pattern=r"^\d{3}$")
    recorded_on: date
    answer_after_days: int = Field(default=3, ge=0)


class Movement(_Model):
    direction: Literal["departure", "arrival"]
    date: date
    country: str
    port: str | None = None


class BorderForceRecord(_Model):
    """Recorded movements; answered ``answer_after_days`` after the request is filed."""

    movements: list[Movement]
    answer_after_days: int = Field(default=3, ge=0)


class WorldChild(_Model):
    """A synthetic child and what each agency knows about them."""

    id: str = Field(pattern=r"^[A-Z][0-9]{4,}$", description="World id, e.g. W00042.")
    scenario: str = Field(description="What the generator meant to happen, e.g. 'left_uk'.")
    upn: str | None = None
    forename: str
    surname: str
    former_surnames: list[str] = []
    dob: date
    sex: Literal["F", "M", "U"] = "U"
    address_line: str | None = None
    town: str | None = None
    postcode: str | None = None
    parent_surname: str | None = None
    nhs_number: str | None = None
    other_la: list[LARecord] = []
    housing: list[HousingRecord] = []
    lpd: list[CTFRecord] = []
    dwp: DWPRecord | None = None
    border_force: BorderForceRecord | None = None


class MendixSource(_Model):
    username: str = "mendix"
    password: str = "sandbox"  # noqa: S105 - a simulator's published default
    max_page_size: int = Field(default=500, ge=1)


class World(_Model):
    """Everything the simulated outside world knows. Synthetic people only."""

    schema_version: Literal[1] = 1
    seed: int | None = None
    today: date = Field(description="The world clock's start (tests may move it).")
    deferred_sla_days: int = Field(default=5, ge=0, description="expected_by = filed + this.")
    no_match_after_days: int = Field(
        default=1, ge=0, description="Deferred 'no match' answers arrive after this many days."
    )
    children: list[WorldChild] = []
    referrals: list[dict[str, Any]] = Field(
        default_factory=list, description="Referral records the Mendix OData source serves."
    )
    mendix: MendixSource = MendixSource()


class AgencyFaults(_Model):
    """How one simulated agency misbehaves. Rates are probabilities per request."""

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    error_rates: dict[int, float] = Field(
        default_factory=dict, description="HTTP status → probability, e.g. {503: 0.3}."
    )
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1, description="429 probability.")
    retry_after: int = Field(default=1, ge=0, description="Retry-After seconds on a 429.")
    retry_after_http_date: bool = Field(default=False, description="Send it as an HTTP-date.")
    max_concurrency: int | None = Field(
        default=None, ge=1, description="More requests in flight than this get 429."
    )
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_seconds: float = Field(default=30.0, ge=0, description="How long a 'timeout' hangs.")
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    truncated_rate: float = Field(default=0.0, ge=0, le=1)
    outage: bool = Field(default=False, description="Every request gets 503.")


class FaultProfile(_Model):
    """Per-agency faults (keys from ``AGENCIES``); ``default`` for the rest. Seeded."""

    seed: int = 0
    default: AgencyFaults = AgencyFaults()
    agencies: dict[str, AgencyFaults] = {}

    def for_agency(self, agency: str) -> AgencyFaults:
        return self.agencies.get(agency, self.default)


def load_world(path: str | Path) -> World:
    return World.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def load_faults(path: str | Path | None) -> FaultProfile:
    if path is None:
        return FaultProfile()
    return FaultProfile.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
