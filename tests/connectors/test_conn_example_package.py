"""The external-package path: the example connector is found through its entry point
(group cme.connectors) and passes the conformance kit."""

from __future__ import annotations

import respx

from connectors import ConnectorSettings, Result, available, load_enabled
from connectors.testing import ConnectorConformance

BASE = "https://hv.example.test/api"


def _example_class() -> type:
    info = available().connectors["health_visitor"]
    assert info.package == "cme-connector-example"
    return info.cls


def test_example_connector_is_discovered_through_its_entry_point() -> None:
    info = available().connectors["health_visitor"]
    assert info.entry_point == "cme_connector_example.connector:HealthVisitorConnector"
    assert info.cls.__module__ == "cme_connector_example.connector"
    (conn,) = load_enabled(["health_visitor"],
                           settings={"health_visitor": ConnectorSettings(base_url=BASE)})
    assert conn.name == "health_visitor"


class TestExamplePackageConformance(ConnectorConformance):
    connector_factory = staticmethod(lambda: _example_class()(ConnectorSettings(base_url=BASE)))

    def found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}/v1/child-lookups").respond(200, json={
            "known": True, "team_la_code": "852", "registered_on": "2026-02-01"})

    def not_found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}/v1/child-lookups").respond(200, json={"known": False})

    def check_found(self, result: Result) -> None:
        (ev,) = result.evidence
        assert (ev.kind, ev.la_code, ev.match_basis) == ("registered", "852", "identifier")
