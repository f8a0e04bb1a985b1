"""Hampshire's district and borough councils: housing and council-tax records.

Asks each configured council whether it holds a current or forwarding address for the
family. Wire API (``sandbox/openapi``)::

    POST {base}/{council}/v1/searches  {"surname", "parent_surname", "postcode", "address_line"}
    200 {"matches": []}
    200 {"matches": [{"address_type": "current" | "forwarding", "address_line": "...",
                      "town": "...", "postcode": "...", "la_code": "850",
                      "recorded_on": "2026-01-10"}]}
    GET  {base}/{council}/v1/health     200 {"status": "ok"}
"""

from __future__ import annotations

import asyncio

from pydantic import Field

from .._contract import Connector
from .._errors import ConnectorError, MalformedResponse
from .._models import Evidence, Query, Result
from .._resilience import AgencyHTTP
from .._settings import ConnectorSettings
from ._util import as_date, as_dict, combine

#: slug → council name: the 11 district and borough councils in Hampshire.
COUNCILS: dict[str, str] = {
    "basingstoke-deane": "Basingstoke and Deane Borough Council",
    "east-hampshire": "East Hampshire District Council",
    "eastleigh": "Eastleigh Borough Council",
    "fareham": "Fareham Borough Council",
    "gosport": "Gosport Borough Council",
    "hart": "Hart District Council",
    "havant": "Havant Borough Council",
    "new-forest": "New Forest District Council",
    "rushmoor": "Rushmoor Borough Council",
    "test-valley": "Test Valley Borough Council",
    "winchester": "Winchester City Council",
}


class HousingSettings(ConnectorSettings):
    councils: list[str] = Field(
        default_factory=lambda: list(COUNCILS),
        description="Council slugs to ask (JSON list); default all 11.",
    )
    council_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Per-council base URL overrides; otherwise {base_url}/{slug}.",
    )


class HousingConnector(Connector):
    name = "housing"
    version = "1.0.0"
    agency = "Hampshire district/borough councils (housing, council tax)"
    fields = frozenset({"surname", "parent_surname", "postcode", "address_line"})
    rate_limit = 100.0
    max_concurrency = 20
    settings_class = HousingSettings
    settings: HousingSettings

    def council_url(self, slug: str) -> str:
        if slug in self.settings.council_urls:
            return self.settings.council_urls[slug].rstrip("/")
        return self.url(slug).rstrip("/")

    def base_urls(self) -> list[str]:
        urls = list(self.settings.council_urls.values())
        if self.settings.base_url:
            urls.append(self.settings.base_url)
        return urls

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        body = query.payload("surname", "parent_surname", "postcode", "address_line")
        answers = await asyncio.gather(
            *(self._ask(slug, body, http) for slug in self.settings.councils)
        )
        return combine(self.name, answers)

    async def _ask(self, slug: str, body: dict[str, object], http: AgencyHTTP
                   ) -> list[Evidence] | ConnectorError:
        try:
            data = as_dict(await http.post_json(f"{self.council_url(slug)}/v1/searches", body,
                                                ok=(200,)))
            matches = data.get("matches")
            if not isinstance(matches, list):
                raise MalformedResponse("housing: 'matches' missing")
            source = COUNCILS.get(slug, slug)
            out = []
            for raw in matches:
                m = as_dict(raw)
                if m.get("address_type") not in ("current", "forwarding"):
                    raise MalformedResponse("housing: unknown address_type")
                # Councils match on a family name and an address: never an identifier.
                out.append(Evidence(
                    kind="address", source=source, address_type=m["address_type"],
                    match_basis="demographic",
                    address=m.get("address_line"), town=m.get("town"),
                    postcode=m.get("postcode"), la_code=m.get("la_code"),
                    date_seen=as_date(m.get("recorded_on")),
                    safeguarding=bool(m.get("safeguarding", False)),
                ))
            return out
        except ConnectorError as exc:
            return exc

    async def health(self, http: AgencyHTTP) -> str:
        for slug in self.settings.councils:
            http.expect(await http.get(f"{self.council_url(slug)}/v1/health"), (200,))
        return f"{len(self.settings.councils)} council(s) answering"
