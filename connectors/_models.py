"""The values that cross the connector boundary: subject, minimised query, result, outcome.

``TraceSubject`` is everything the pipeline knows about a child; a connector never sees it.
The runner builds a ``Query`` holding only the connector's declared ``fields`` and records
which of them the connector actually read (and so could send): ``disclosed_fields``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._errors import ConnectorError, ErrorKind

__all__ = [
    "QUERY_FIELDS",
    "CheckEvidence",
    "CheckOutcome",
    "Evidence",
    "EvidenceKind",
    "MatchBasis",
    "Outcome",
    "Query",
    "Result",
    "StoredEvidence",
    "TraceSubject",
]


class TraceSubject(BaseModel):
    """A child being traced, as the pipeline knows them. Personal fields never print."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: str = Field(description="Mendix reference of the referral (not personal data).")
    upn: str | None = Field(default=None, repr=False)
    forename: str | None = Field(default=None, repr=False)
    surname: str | None = Field(default=None, repr=False)
    former_surnames: tuple[str, ...] = Field(default=(), repr=False)
    dob: date | None = Field(default=None, repr=False)
    sex: str | None = Field(default=None, repr=False, description="F, M or U.")
    postcode: str | None = Field(default=None, repr=False)
    address_line: str | None = Field(default=None, repr=False)
    town: str | None = Field(default=None, repr=False)
    last_school_urn: str | None = Field(default=None, repr=False)
    home_la: str | None = Field(default=None, description="LA code of the referring LA.")
    parent_surname: str | None = Field(default=None, repr=False)
    nhs_number: str | None = Field(default=None, repr=False)


#: Every field a connector may declare: the subject's fields except the Mendix reference.
QUERY_FIELDS: frozenset[str] = frozenset(TraceSubject.model_fields) - {"reference"}


class Query:
    """The minimised query one connector sees for one subject.

    Holds only the connector's declared fields (others read as ``None``) and remembers which
    non-empty fields the connector read: those are reported as disclosed. Read a field only
    to send it. ``repr`` shows field names, never values.
    """

    __slots__ = ("_values", "_declared", "_accessed")

    if TYPE_CHECKING:
        upn: str | None
        forename: str | None
        surname: str | None
        former_surnames: tuple[str, ...] | None
        dob: date | None
        sex: str | None
        postcode: str | None
        address_line: str | None
        town: str | None
        last_school_urn: str | None
        home_la: str | None
        parent_surname: str | None
        nhs_number: str | None

    def __init__(self, values: Mapping[str, Any], declared: frozenset[str]) -> None:
        unknown = set(values) - QUERY_FIELDS
        if unknown:
            raise ValueError(f"not query fields: {sorted(unknown)}")
        object.__setattr__(self, "_values", {k: v for k, v in values.items() if k in declared})
        object.__setattr__(self, "_declared", frozenset(declared))
        object.__setattr__(self, "_accessed", set())

    def __getattr__(self, name: str) -> Any:
        if name in QUERY_FIELDS:
            value = self._values.get(name)
            if value not in (None, "", ()):
                self._accessed.add(name)
                return value
            return None
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Query is read-only")

    def __repr__(self) -> str:
        return f"Query(fields={sorted(self._values)})"

    def payload(self, *names: str) -> dict[str, Any]:
        """A JSON-ready dict of the named fields that have values (dates as ISO strings)."""
        out: dict[str, Any] = {}
        for name in names:
            if name not in QUERY_FIELDS:
                raise ValueError(f"not a query field: {name}")
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @property
    def declared(self) -> frozenset[str]:
        declared: frozenset[str] = self._declared
        return declared

    @property
    def accessed(self) -> frozenset[str]:
        """Non-empty fields the connector has read so far."""
        return frozenset(self._accessed)


class Outcome(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    PENDING = "pending"
    ERROR = "error"


#: ``registered``: registered with a service (a GP practice, a health visiting team) in
#: ``la_code`` — a lead to where the child lives, never a home address (policy.EVIDENCE_KINDS).
EvidenceKind = Literal["on_roll", "resident", "address", "registered", "ctf", "departure",
                       "arrival"]
MatchBasis = Literal["identifier", "demographic"]
_LA = r"^(\d{3}|XXX|MMM)$"
_ESTAB = r"^(\d{4}|XXXX|MMMM)$"


class Evidence(BaseModel):
    """One thing an agency told us. Addresses and postcodes never print."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EvidenceKind
    source: str | None = Field(default=None, description="Which office answered, e.g. 'LA 852'.")
    address: str | None = Field(default=None, repr=False)
    town: str | None = Field(default=None, repr=False)
    postcode: str | None = Field(default=None, repr=False)
    address_type: Literal["current", "forwarding"] | None = None
    la_code: str | None = Field(default=None, pattern=r"^\d{3}$")
    school_urn: str | None = Field(default=None, pattern=r"^\d{6}$")
    on_roll: bool | None = None
    date_seen: date | None = None
    departure_date: date | None = None
    departure_country: str | None = None
    ctf_destination: str | None = Field(
        default=None, description="'LLL/EEEE' (LA/establishment), or 'XXX' unknown, 'MMM' abroad."
    )
    ctf_destination_la: str | None = Field(default=None, pattern=_LA)
    ctf_destination_establishment: str | None = Field(default=None, pattern=_ESTAB)
    ctf_leaving_date: date | None = None
    confidence: float = Field(default=1.0, ge=0.0, le=1.0,
                              description="The agency's confidence that this is the child.")
    match_basis: MatchBasis | None = Field(
        default=None,
        description="How the agency matched the child: 'identifier' (UPN or NHS number) or "
        "'demographic' (names and date of birth, perhaps a postcode). Not said is read as "
        "demographic, so the rulebook treats it as a possible match for an officer.",
    )
    safeguarding: bool = False

    @model_validator(mode="after")
    def _kind_has_its_facts(self) -> Evidence:
        if self.kind == "on_roll" and not self.school_urn:
            raise ValueError("on_roll evidence needs school_urn")
        if self.kind in ("departure", "arrival") and self.departure_date is None:
            raise ValueError(f"{self.kind} evidence needs departure_date (the movement date)")
        if self.kind == "registered" and not self.la_code:
            raise ValueError("registered evidence needs la_code (the service's LA)")
        if self.kind == "ctf" and not self.ctf_destination:
            raise ValueError("ctf evidence needs ctf_destination")
        if self.kind in ("resident", "address") and not (
            self.address or self.postcode or self.la_code
        ):
            raise ValueError(f"{self.kind} evidence needs an address, postcode or la_code")
        return self

    @property
    def destination_unknown(self) -> bool:
        return self.ctf_destination_la == "XXX"

    @property
    def abroad(self) -> bool:
        return self.ctf_destination_la == "MMM"


class CheckEvidence(BaseModel):
    """What one check found, as it is stored on the check's row (``models.Check.evidence``).

    The only shape written to that column and the only way it is read back: write with
    :meth:`column`, read with :meth:`read`. Rows written before a field was added to
    :class:`Evidence` still read (new fields have defaults); a key the model does not know
    (a misspelt ``school_urn``, say) is rejected, never read as "not said".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: tuple[Evidence, ...]

    @model_validator(mode="after")
    def _found_something(self) -> CheckEvidence:
        # Stored only for a found answer, which always carries evidence (Result); checked
        # after the items so a bad item is reported alone.
        if not self.items:
            raise ValueError("items: a stored answer carries at least one piece of evidence")
        return self

    @classmethod
    def column(cls, evidence: Sequence[Evidence]) -> dict[str, Any] | None:
        """The value to store for these findings (JSON-ready); None when there are none."""
        if not evidence:
            return None
        return cls(items=tuple(evidence)).model_dump(mode="json")

    @classmethod
    def read(cls, stored: object) -> StoredEvidence:
        """A stored column value as evidence. Never raises: a value that does not validate
        gives a :class:`StoredEvidence` with no items and a ``problem`` naming what is wrong
        (field paths and reasons only, never the stored values: they may be addresses)."""
        if stored is None:
            return StoredEvidence()
        try:
            return StoredEvidence(items=cls.model_validate(stored).items)
        except ValidationError as exc:
            reasons = sorted({
                f"{'.'.join(str(p) for p in err['loc']) or 'evidence'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False,
                                      include_context=False)
            })
            return StoredEvidence(problem="stored evidence does not read: " + "; ".join(reasons))


@dataclass(frozen=True, slots=True)
class StoredEvidence:
    """A check row's evidence as read by :meth:`CheckEvidence.read`: the findings, or (when
    the stored value does not validate) none and a PII-free ``problem``."""

    items: tuple[Evidence, ...] = ()
    problem: str | None = None

    @property
    def readable(self) -> bool:
        return self.problem is None


class Result(BaseModel):
    """What one check found. Build with the class methods; impossible combinations fail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Outcome
    evidence: tuple[Evidence, ...] = ()
    agency_reference: str | None = None
    expected_by: date | None = None
    error_kind: ErrorKind | None = None
    error_code: str | None = None
    message: str | None = Field(default=None, description="PII-free explanation.")
    status_code: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Result:
        o = self.outcome
        if o is Outcome.FOUND and not self.evidence:
            raise ValueError("found needs evidence")
        if o is not Outcome.FOUND and self.evidence:
            raise ValueError(f"{o.value} cannot carry evidence")
        if o is Outcome.PENDING and not (self.agency_reference and self.expected_by):
            raise ValueError("pending needs agency_reference and expected_by")
        if o is Outcome.ERROR and not (self.error_kind and self.error_code):
            raise ValueError("error needs error_kind and error_code")
        if o is not Outcome.ERROR and (self.error_kind or self.error_code):
            raise ValueError(f"{o.value} cannot carry an error kind/code")
        return self

    @classmethod
    def found(cls, evidence: Evidence | Sequence[Evidence], *, agency_reference: str | None = None
              ) -> Result:
        ev = (evidence,) if isinstance(evidence, Evidence) else tuple(evidence)
        return cls(outcome=Outcome.FOUND, evidence=ev, agency_reference=agency_reference)

    @classmethod
    def not_found(cls, *, agency_reference: str | None = None) -> Result:
        return cls(outcome=Outcome.NOT_FOUND, agency_reference=agency_reference)

    @classmethod
    def pending(cls, agency_reference: str, expected_by: date) -> Result:
        return cls(
            outcome=Outcome.PENDING, agency_reference=agency_reference, expected_by=expected_by
        )

    @classmethod
    def error(
        cls, kind: ErrorKind, code: str, message: str, *, status_code: int | None = None,
        agency_reference: str | None = None,
    ) -> Result:
        return cls(
            outcome=Outcome.ERROR, error_kind=kind, error_code=code, message=message,
            status_code=status_code, agency_reference=agency_reference,
        )

    @classmethod
    def from_error(cls, exc: ConnectorError, *, agency_reference: str | None = None) -> Result:
        return cls.error(exc.kind, exc.code, exc.message, status_code=exc.status_code,
                         agency_reference=agency_reference)

    @property
    def safeguarding(self) -> bool:
        return any(e.safeguarding for e in self.evidence)


class CheckOutcome(BaseModel):
    """One subject × one connector: the result plus what the audit trail needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject_reference: str
    connector: str
    connector_version: str
    operation: Literal["search", "submit", "poll"]
    disclosed_fields: tuple[str, ...] = Field(
        description="Sorted names of the subject's fields that were sent to the agency."
    )
    result: Result
    http_calls: int = Field(ge=0)
    checked_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    duration_ms: float = 0.0

    @property
    def outcome(self) -> Outcome:
        return self.result.outcome
