"""Other local authorities' CME / admissions teams.

Asks every configured LA (``CME_OTHER_LA_LAS``: a JSON object, LA code → base URL) whether
the child is on a school roll or resident in its area. Wire API (``sandbox/openapi``)::

    POST {la_base}/cme/v1/enquiries  {"forename", "surname", "dob", "upn"}   (values present)
    200 {"result": "no_match"}
    200 {"result": "match", "records": [
          {"type": "on_roll", "school_urn": "123456", "since": "2026-01-05", "safeguarding": false,
           "matched_on": "upn"},
          {"type": "resident", "address_line": "...", "postcode": "...", "since": "...",
           "matched_on": "name_dob"}]}

``matched_on`` says how the LA matched the child: ``upn`` (or ``nhs_number``) is an
identifier match; anything else, or nothing, is read as demographic (names and date of birth).
    GET  {la_base}/cme/v1/health      200 {"status": "ok"}
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from .._contract import Connector
from .._errors import ConnectorError, MalformedResponse, PermanentError
from .._models import Evidence, Query, Result
from .._resilience import AgencyHTTP
from .._settings import ConnectorSettings
from ._util import as_date, as_dict, combine


class OtherLASettings(ConnectorSettings):
    las: dict[str, str] = Field(
        default_factory=dict,
        description="LA code → base URL of that LA's CME enquiry API (JSON object).",
    )


class OtherLAConnector(Connector):
    name = "other_la"
    version = "1.0.0"
    agency = "Other local authorities (CME/admissions teams)"
    fields = frozenset({"forename", "surname", "dob", "upn"})
    rate_limit = 100.0
    max_concurrency = 20
    settings_class = OtherLASettings
    settings: OtherLASettings

    def base_urls(self) -> list[str]:
        return list(self.settings.las.values())

    def _las(self) -> dict[str, str]:
        if not self.settings.las:
            raise PermanentError("other_la: CME_OTHER_LA_LAS is empty", code="not_configured")
        return self.settings.las

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        body = query.payload("forename", "surname", "dob", "upn")
        las = self._las()
        answers = await asyncio.gather(
            *(self._ask(code, base, body, http) for code, base in las.items())
        )
        return combine(self.name, answers)

    async def _ask(self, la_code: str, base: str, body: dict[str, object], http: AgencyHTTP
                   ) -> list[Evidence] | ConnectorError:
        try:
            data = as_dict(await http.post_json(f"{base.rstrip('/')}/cme/v1/enquiries", body,
                                                ok=(200,)))
            return self._parse(la_code, data)
        except ConnectorError as exc:
            return exc

    @staticmethod
    def _parse(la_code: str, data: dict[str, object]) -> list[Evidence]:
        result = data.get("result")
        if result == "no_match":
            return []
        records = data.get("records")
        if result != "match" or not isinstance(records, list):
            raise MalformedResponse("other_la: unexpected enquiry answer")
        out: list[Evidence] = []
        for raw in records:
            rec = as_dict(raw)
            kind = rec.get("type")
            basis = ("identifier" if rec.get("matched_on") in ("upn", "nhs_number")
                     else "demographic")
            common = {"source": f"LA {la_code}", "la_code": la_code,
                      "date_seen": as_date(rec.get("since")), "match_basis": basis,
                      "safeguarding": bool(rec.get("safeguarding", False))}
            if kind == "on_roll":
                out.append(Evidence(kind="on_roll", on_roll=True,
                                    school_urn=str(rec.get("school_urn")), **common))
            elif kind == "resident":
                out.append(Evidence(kind="resident", on_roll=False,
                                    address=rec.get("address_line"),
                                    postcode=rec.get("postcode"),
                                    **common))
            else:
                raise MalformedResponse("other_la: unknown record type")
        if not out:
            raise MalformedResponse("other_la: match without records")
        return out

    async def health(self, http: AgencyHTTP) -> str:
        las = self._las()
        for base in las.values():
            http.expect(await http.get(f"{base.rstrip('/')}/cme/v1/health"), (200,))
        return f"{len(las)} LA(s) answering"
