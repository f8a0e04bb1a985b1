"""The shared wire API of the deferred agencies (formal request now, answer days later)::

    POST {base}/v1/requests               {declared fields}
    202 {"reference": "DWP-20260302-W00012", "expected_by": "2026-03-05"}
    GET  {base}/v1/requests/{reference}
    200 {"reference": ..., "status": "pending", "expected_by": "..."}
    200 {"reference": ..., "status": "answered", "result": "no_match"}
    200 {"reference": ..., "status": "answered", "result": "match", ...agency-specific...}
    404 unknown reference (a permanent error: the enquiry must be filed again)
    GET  {base}/v1/health                 200 {"status": "ok"}
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar
from urllib.parse import quote

from .._contract import Connector
from .._errors import MalformedResponse
from .._models import Evidence, Query, Result
from .._resilience import AgencyHTTP
from ._util import as_date, as_dict


class DeferredAgencyConnector(Connector):
    deferred = True
    request_fields: ClassVar[tuple[str, ...]]

    async def submit(self, query: Query, http: AgencyHTTP) -> Result:
        body = query.payload(*self.request_fields)
        data = as_dict(await http.post_json(self.url("v1/requests"), body, ok=(200, 201, 202)))
        reference = data.get("reference")
        expected_by = as_date(data.get("expected_by"))
        if not isinstance(reference, str) or not reference or expected_by is None:
            raise MalformedResponse(f"{self.name}: request accepted without reference/date")
        return Result.pending(reference, expected_by)

    async def poll(self, agency_reference: str, http: AgencyHTTP) -> Result:
        url = self.url(f"v1/requests/{quote(agency_reference, safe='')}")
        data = as_dict(await http.get_json(url))
        status = data.get("status")
        if status == "pending":
            expected_by = as_date(data.get("expected_by"))
            if expected_by is None:
                raise MalformedResponse(f"{self.name}: pending without expected_by")
            return Result.pending(agency_reference, expected_by)
        if status != "answered":
            raise MalformedResponse(f"{self.name}: unknown enquiry status")
        if data.get("result") == "no_match":
            return Result.not_found(agency_reference=agency_reference)
        if data.get("result") != "match":
            raise MalformedResponse(f"{self.name}: unknown enquiry result")
        evidence = self.parse_answer(data)
        if not evidence:
            raise MalformedResponse(f"{self.name}: match without facts")
        return Result.found(evidence, agency_reference=agency_reference)

    @abstractmethod
    def parse_answer(self, data: dict[str, Any]) -> list[Evidence]:
        """Evidence from an answered ``match``."""

    async def health(self, http: AgencyHTTP) -> str:
        http.expect(await http.get(self.url("v1/health")), (200,))
        return "request service answering"
