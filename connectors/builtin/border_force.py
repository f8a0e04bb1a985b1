"""Border Force: recorded departures from and arrivals in the UK — a **stub of a
formal-request process**.

The real Border Force has no API for local authorities: it answers only formal requests,
days later, and an officer types the answer in (the ``record-agency-response`` flow). This
connector files the request against the simulated agency (``submit`` → pending with a
reference) and ``poll`` returns the answer once the sandbox has one. Wire API: see
``_deferred`` — a ``match`` carries ``{"movements": [{"direction": "departure" | "arrival",
"date": "YYYY-MM-DD", "country": "PL", "port": "LHR"}]}``.
"""

from __future__ import annotations

from typing import Any

from .._errors import MalformedResponse
from .._models import Evidence
from ._deferred import DeferredAgencyConnector
from ._util import as_date, as_dict


class BorderForceConnector(DeferredAgencyConnector):
    name = "border_force"
    version = "1.0.0"
    agency = "Border Force (formal request; stub)"
    fields = frozenset({"forename", "surname", "dob", "sex"})
    request_fields = ("forename", "surname", "dob", "sex")
    rate_limit = 20.0
    max_concurrency = 5
    # Answers a formal request from its own records: strong evidence, though it matches on
    # names and date of birth (docs/connectors.md, "How the rulebook uses evidence").
    official = True

    def parse_answer(self, data: dict[str, Any]) -> list[Evidence]:
        movements = data.get("movements")
        if not isinstance(movements, list):
            raise MalformedResponse("border_force: 'movements' missing")
        out = []
        for raw in movements:
            m = as_dict(raw)
            direction = m.get("direction")
            if direction not in ("departure", "arrival"):
                raise MalformedResponse("border_force: unknown movement direction")
            out.append(Evidence(
                kind=direction, source="Border Force", departure_date=as_date(m.get("date")),
                match_basis="demographic",
                departure_country=m.get("country"), date_seen=as_date(m.get("date")),
            ))
        return out
