"""Schemas for data crossing the edge (referral files, the Mendix OData feed, the UI).

These validate once; table rows (:mod:`models.tables`) trust them. ``hide_input_in_errors``
keeps a rejected child's details out of validation messages.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from models.enums import ReferralKind
from models.types import UPN, URN, LACode, Postcode

__all__ = [
    "AddressIn",
    "AttendanceMarkIn",
    "ChildIn",
    "EducationOtherwise",
    "ParentIn",
    "ReferralIn",
    "SchoolAction",
    "SchoolActionIn",
    "SchoolIn",
    "REQUIRED_SCHOOL_ACTIONS",
]


class _Edge(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True, extra="forbid", str_strip_whitespace=True)


class SchoolAction(StrEnum):
    """The enquiries the guidance (Hampshire) expects a school to have made before referring."""

    phone_parents = "phone_parents"
    email_letter_or_visit = "email_letter_or_visit"
    contact_other_schools = "contact_other_schools"
    ask_peers = "ask_peers"
    contact_agencies = "contact_agencies"


#: Convention (Hampshire's guidance for schools: what a school must do before it refers): a
#: referral missing any of these is accepted but flagged, and the school is told what is
#: missing. ``contact_agencies`` is only expected where relevant (e.g. a service child), so it
#: is not required in general.
REQUIRED_SCHOOL_ACTIONS: tuple[SchoolAction, ...] = (
    SchoolAction.phone_parents,
    SchoolAction.email_letter_or_visit,
    SchoolAction.contact_other_schools,
    SchoolAction.ask_peers,
)


class EducationOtherwise(StrEnum):
    ehe_suitable = "ehe_suitable"
    ehe_unsuitable = "ehe_unsuitable"
    ehe_unassessed = "ehe_unassessed"
    alternative_provision = "alternative_provision"


class SchoolIn(_Edge):
    urn: URN
    name: str = Field(min_length=1, max_length=200)
    la_code: LACode
    email: EmailStr


class AddressIn(_Edge):
    line1: str | None = Field(default=None, max_length=200, repr=False)
    town: str | None = Field(default=None, max_length=100, repr=False)
    postcode: Postcode | None = Field(default=None, repr=False)


class ChildIn(_Edge):
    upn: UPN | None = Field(default=None, repr=False)
    forename: str = Field(min_length=1, max_length=100, repr=False)
    surname: str = Field(min_length=1, max_length=100, repr=False)
    former_surnames: list[str] = Field(default_factory=list, repr=False)
    dob: date = Field(repr=False)
    sex: Literal["F", "M", "U"] | None = Field(default=None, repr=False)
    nhs_number: str | None = Field(default=None, pattern=r"^[0-9]{10}$", repr=False)
    address: AddressIn = Field(default_factory=AddressIn, repr=False)
    sen: bool = False

    @field_validator("forename", "surname")
    @classmethod
    def _has_a_letter(cls, value: str) -> str:
        # A name without a single letter is not a name (and gives no initial to notify by).
        if not any(c.isalpha() for c in value):
            raise ValueError("must contain a letter")
        return value


class ParentIn(_Edge):
    name: str | None = Field(default=None, max_length=200, repr=False)
    relationship: str | None = Field(default=None, max_length=50)
    phone: str | None = Field(default=None, max_length=40, repr=False)
    email: str | None = Field(default=None, max_length=254, repr=False)


class SchoolActionIn(_Edge):
    action: SchoolAction
    date: date
    note: str | None = Field(default=None, max_length=1000, repr=False)


class AttendanceMarkIn(_Edge):
    """One register session, as the school's form may attach them for a PMOOE referral."""

    date: date
    session: Literal["AM", "PM"]
    code: str = Field(min_length=1, max_length=2)


class ReferralIn(_Edge):
    """One referral as the school's online form (Mendix) sends it. See README, "Referral file"."""

    mendix_reference: str = Field(min_length=3, max_length=40, pattern=r"^[A-Za-z0-9_\-/]+$")
    kind: ReferralKind
    received_at: AwareDatetime
    school: SchoolIn
    child: ChildIn
    parents: list[ParentIn] = Field(default_factory=list)
    reason: str = Field(default="", max_length=2000, repr=False)
    last_attended: date | None = None
    on_roll: bool = True
    education_otherwise: EducationOtherwise | None = None
    reduced_hours: bool = False
    medical_absence: bool = False
    school_actions: list[SchoolActionIn] = Field(default_factory=list)
    attendance: list[AttendanceMarkIn] = Field(default_factory=list)
    leave_end: date | None = None
    safeguarding_concern: bool = False
    service_child: bool = False
    changed_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _dates_make_sense(self) -> ReferralIn:
        received = self.received_at.date()
        if self.child.dob > received:
            raise ValueError("child.dob: date of birth is after the referral was received")
        if self.last_attended is not None and self.last_attended > received:
            raise ValueError("last_attended: after the referral was received")
        return self

    def missing_actions(self) -> list[str]:
        done = {a.action for a in self.school_actions}
        missing = [a.value for a in REQUIRED_SCHOOL_ACTIONS if a not in done]
        if self.service_child and SchoolAction.contact_agencies not in done:
            missing.append(SchoolAction.contact_agencies.value)
        return missing


