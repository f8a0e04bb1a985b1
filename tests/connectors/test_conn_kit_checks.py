"""Issue 20, point 5: the conformance kit refuses evidence the rulebook cannot weigh — a
kind it does not read, or no word on how the agency matched the child."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import respx

from connectors import AgencyHTTP, Connector, ConnectorSettings, Evidence, Query, Result
from connectors.testing import ConnectorConformance

BASE = "https://kit-check.example.test"


class _Lookup(Connector):
    name = "kit_check"
    version = "0.1.0"
    agency = "kit check agency"
    fields = frozenset({"upn"})
    evidence: ClassVar[dict[str, Any]] = {}

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        data = await http.post_json(self.url("v1/lookups"), query.payload("upn"), ok=(200,))
        if not data["known"]:
            return Result.not_found()
        # model_construct: what a connector built against another version of the contract
        # could hand over; the kit must still catch it.
        return Result.found(Evidence.model_construct(**{**self.evidence, "confidence": 1.0,
                                                        "safeguarding": False}))


def _kit(evidence: dict[str, Any]) -> ConnectorConformance:
    connector = type("Lookup", (_Lookup,), {"evidence": evidence})

    class Kit(ConnectorConformance):
        connector_factory = staticmethod(lambda: connector(ConnectorSettings(base_url=BASE)))
        expect_entry_point = False

        def found_route(self, router: respx.MockRouter) -> None:
            router.post(f"{BASE}/v1/lookups").respond(200, json={"known": True})

        def not_found_route(self, router: respx.MockRouter) -> None:
            router.post(f"{BASE}/v1/lookups").respond(200, json={"known": False})

    return Kit()


def test_evidence_that_says_how_it_matched_passes() -> None:
    _kit({"kind": "registered", "la_code": "852", "match_basis": "identifier"}
         ).test_evidence_is_what_the_rulebook_reads()


@pytest.mark.parametrize(("evidence", "message"), [
    ({"kind": "on_roll", "school_urn": "117000", "match_basis": None}, "match_basis not said"),
    ({"kind": "gp_visit", "la_code": "852", "match_basis": "identifier"}, "not read by policy"),
    ({"kind": "on_roll", "school_urn": "117000", "on_roll": False,
      "match_basis": "identifier"}, "nothing the rules use"),
], ids=["no-match-basis", "unknown-kind", "nothing-usable"])
def test_evidence_the_rulebook_cannot_weigh_fails_the_kit(
    evidence: dict[str, Any], message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        _kit(evidence).test_evidence_is_what_the_rulebook_reads()
