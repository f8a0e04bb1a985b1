"""DWP: the address DWP holds for the family — a **stub of a formal-request process**.

The real DWP has no API for local authorities: it answers only formal requests made under
its own legal gateway, days later, and the answer is typed in by a CME officer (the
``record-agency-response`` flow). This connector files the request against the simulated
agency (``submit`` → pending with a reference and an expected-by date) and ``poll`` returns
the answer once the sandbox has one. Wire API: see ``_deferred`` — a ``match`` carries
``{"address": {"line1", "town", "postcode", "la_code"}, "recorded_on": "YYYY-MM-DD"}``.
"""

from __future__ import annotations

from typing import Any

from .._errors import MalformedResponse
from .._models import Evidence
from ._deferred import DeferredAgencyConnector
from ._util import as_date, as_dict


class DWPConnector(DeferredAgencyConnector):
    name = "dwp"
    version = "1.0.0"
    agency = "Department for Work and Pensions (formal request; stub)"
    fields = frozenset({"forename", "surname", "dob", "postcode"})
    request_fields = ("forename", "surname", "dob", "postcode")
    rate_limit = 20.0
    max_concurrency = 5
    # Answers a formal request from its own records: strong evidence, though it matches on
    # names and date of birth (docs/connectors.md, "How the rulebook uses evidence").
    official = True

    def parse_answer(self, data: dict[str, Any]) -> list[Evidence]:
        address = as_dict(data.get("address"))
        if not (address.get("line1") or address.get("postcode")):
            raise MalformedResponse("dwp: match without an address")
        return [Evidence(
            kind="address", source="DWP", address_type="current", match_basis="demographic",
            address=address.get("line1"), town=address.get("town"),
            postcode=address.get("postcode"), la_code=address.get("la_code"),
            date_seen=as_date(data.get("recorded_on")),
        )]
