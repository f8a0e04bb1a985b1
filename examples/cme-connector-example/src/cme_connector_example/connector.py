"""Health visiting / school nursing (0-19 public health nursing) lookup.

A health visiting team can say whether a child is registered with it, and in which LA: a
registration with a service (evidence kind ``registered``), a lead to where the child lives
but not a home address, so the rulebook puts it to an officer. Wire API::

    POST {base}/v1/child-lookups   {"nhs_number", "dob", "surname"}
    200 {"known": false}
    200 {"known": true, "team_la_code": "852", "registered_on": "2026-02-01",
         "safeguarding": false}
"""

from __future__ import annotations

from datetime import date

from connectors import (
    AgencyHTTP,
    Connector,
    Evidence,
    MalformedResponse,
    Query,
    Result,
)


class HealthVisitorConnector(Connector):
    name = "health_visitor"
    version = "0.1.0"
    agency = "0-19 health visiting and school nursing service"
    fields = frozenset({"nhs_number", "dob", "surname"})
    rate_limit = 5.0
    max_concurrency = 4

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        body = query.payload("nhs_number", "dob", "surname")
        data = await http.post_json(self.url("v1/child-lookups"), body, ok=(200,))
        if not isinstance(data, dict) or not isinstance(data.get("known"), bool):
            raise MalformedResponse("health_visitor: unexpected answer")
        if not data["known"]:
            return Result.not_found()
        registered = data.get("registered_on")
        return Result.found(Evidence(
            kind="registered", source="Health visiting", la_code=data.get("team_la_code"),
            # The lookup is by NHS number: a match on an identifier.
            match_basis="identifier",
            on_roll=None, date_seen=date.fromisoformat(registered) if registered else None,
            safeguarding=bool(data.get("safeguarding", False)), confidence=0.8,
        ))

    async def health(self, http: AgencyHTTP) -> str:
        http.expect(await http.get(self.url("v1/health")), (200,))
        return "lookup service answering"
