"""The example connector passes the standard conformance kit (run: pytest tests/)."""

from __future__ import annotations

import respx
from cme_connector_example import HealthVisitorConnector

from connectors import ConnectorSettings, Result
from connectors.testing import ConnectorConformance

BASE = "https://hv.example.test/api"


class TestHealthVisitorConformance(ConnectorConformance):
    connector_factory = staticmethod(
        lambda: HealthVisitorConnector(ConnectorSettings(base_url=BASE))
    )

    def found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}/v1/child-lookups").respond(200, json={
            "known": True, "team_la_code": "852", "registered_on": "2026-02-01"})

    def not_found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}/v1/child-lookups").respond(200, json={"known": False})

    def check_found(self, result: Result) -> None:
        (ev,) = result.evidence
        assert (ev.kind, ev.la_code) == ("resident", "852")
