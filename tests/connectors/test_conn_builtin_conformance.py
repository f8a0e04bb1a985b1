"""Every built-in connector passes the conformance kit."""

from __future__ import annotations

import respx

from connectors import ConnectorSettings, Result
from connectors.builtin.border_force import BorderForceConnector
from connectors.builtin.dwp import DWPConnector
from connectors.builtin.housing import HousingConnector, HousingSettings
from connectors.builtin.lpd import LPDConnector
from connectors.builtin.other_la import OtherLAConnector, OtherLASettings
from connectors.testing import ConnectorConformance

LA_BASE = "https://cme.southampton.test/api"
HOUSING_BASE = "https://housing.hants.test"
LPD_BASE = "https://s2s.education.test/lpd"
DWP_BASE = "https://dwp.test"
BF_BASE = "https://borderforce.test"

CTF_FOUND = b"""<?xml version="1.0" encoding="UTF-8"?>
<LostPupilSearch matches="1"><CTfile><Header><DocumentName>Common Transfer File</DocumentName>
<SourceSchool><LEA>850</LEA><Estab>2001</Estab></SourceSchool>
<DestSchool><LEA>MMM</LEA><Estab>MMMM</Estab></DestSchool></Header>
<CTFpupilData><Pupil><LeavingDate>2026-01-09</LeavingDate></Pupil></CTFpupilData></CTfile>
</LostPupilSearch>"""
CTF_NONE = b'<?xml version="1.0"?><LostPupilSearch matches="0"/>'


class TestOtherLAConformance(ConnectorConformance):
    connector_factory = staticmethod(
        lambda: OtherLAConnector(OtherLASettings(las={"852": LA_BASE}))
    )

    def found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{LA_BASE}/cme/v1/enquiries").respond(200, json={
            "result": "match",
            "records": [{"type": "on_roll", "school_urn": "145678", "since": "2026-01-12",
                         "matched_on": "upn"}],
        })

    def not_found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{LA_BASE}/cme/v1/enquiries").respond(200, json={"result": "no_match"})

    def check_found(self, result: Result) -> None:
        (ev,) = result.evidence
        assert (ev.kind, ev.school_urn, ev.la_code, ev.on_roll) == ("on_roll", "145678", "852",
                                                                    True)
        assert ev.match_basis == "identifier"  # the LA said it matched on the UPN


class TestHousingConformance(ConnectorConformance):
    calls_per_check = 2
    connector_factory = staticmethod(lambda: HousingConnector(
        HousingSettings(base_url=HOUSING_BASE, councils=["eastleigh", "hart"])
    ))

    def found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{HOUSING_BASE}/eastleigh/v1/searches").respond(200, json={"matches": [{
            "address_type": "forwarding", "address_line": "2 Elm Row", "town": "Eastleigh",
            "postcode": "SO50 5AA", "la_code": "850", "recorded_on": "2026-02-01"}]})
        router.post(f"{HOUSING_BASE}/hart/v1/searches").respond(200, json={"matches": []})

    def not_found_route(self, router: respx.MockRouter) -> None:
        router.post(url__regex=rf"{HOUSING_BASE}/.*/v1/searches").respond(
            200, json={"matches": []})

    def check_found(self, result: Result) -> None:
        (ev,) = result.evidence
        assert (ev.kind, ev.address_type, ev.la_code) == ("address", "forwarding", "850")
        assert ev.source == "Eastleigh Borough Council"
        assert ev.match_basis == "demographic"  # councils match on a family name and address


class TestLPDConformance(ConnectorConformance):
    connector_factory = staticmethod(lambda: LPDConnector(ConnectorSettings(base_url=LPD_BASE)))

    def found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{LPD_BASE}/s2s/v1/lost-pupils/search").respond(
            200, content=CTF_FOUND, headers={"content-type": "application/xml"})

    def not_found_route(self, router: respx.MockRouter) -> None:
        router.post(f"{LPD_BASE}/s2s/v1/lost-pupils/search").respond(200, content=CTF_NONE)

    def check_found(self, result: Result) -> None:
        (ev,) = result.evidence
        assert (ev.kind, ev.ctf_destination, ev.abroad) == ("ctf", "MMM", True)


def _deferred_routes(router: respx.MockRouter, base: str, answer: dict[str, object]) -> None:
    router.post(f"{base}/v1/requests").respond(
        202, json={"reference": "REF-20260302-1", "expected_by": "2026-03-05"})
    router.get(f"{base}/v1/requests/REF-20260302-1").respond(
        200, json={"reference": "REF-20260302-1", "status": "answered", **answer})


class TestDWPConformance(ConnectorConformance):
    connector_factory = staticmethod(lambda: DWPConnector(ConnectorSettings(base_url=DWP_BASE)))

    def found_route(self, router: respx.MockRouter) -> None:
        _deferred_routes(router, DWP_BASE, {"result": "match", "recorded_on": "2026-02-20",
                         "address": {"line1": "9 Quay St", "town": "Leeds",
                                     "postcode": "LS1 1AA", "la_code": "383"}})

    def not_found_route(self, router: respx.MockRouter) -> None:
        _deferred_routes(router, DWP_BASE, {"result": "no_match"})

    def check_found(self, result: Result) -> None:
        (ev,) = result.evidence
        assert (ev.kind, ev.la_code, ev.source) == ("address", "383", "DWP")
        assert result.agency_reference == "REF-20260302-1"
        assert ev.match_basis == "demographic" and DWPConnector.official


class TestBorderForceConformance(ConnectorConformance):
    connector_factory = staticmethod(
        lambda: BorderForceConnector(ConnectorSettings(base_url=BF_BASE)))

    def found_route(self, router: respx.MockRouter) -> None:
        _deferred_routes(router, BF_BASE, {"result": "match", "movements": [
            {"direction": "departure", "date": "2026-01-20", "country": "PL", "port": "LTN"}]})

    def not_found_route(self, router: respx.MockRouter) -> None:
        _deferred_routes(router, BF_BASE, {"result": "no_match"})

    def check_found(self, result: Result) -> None:
        (ev,) = result.evidence
        assert (ev.kind, ev.departure_country, str(ev.departure_date)) == (
            "departure", "PL", "2026-01-20")
        assert ev.match_basis == "demographic" and BorderForceConnector.official




# --- how each built-in says it matched the child (issue 14, point 8) ---------------------


async def _search(connector, subject):  # type: ignore[no-untyped-def]
    from connectors import run_connector

    (outcome,) = await run_connector(connector, [subject])
    return outcome.result


async def test_other_la_reports_the_match_basis_the_la_gives() -> None:
    from connectors import TraceSubject

    subject = TraceSubject(reference="CME-1", forename="A", surname="B",
                           dob="2015-01-01")  # type: ignore[arg-type]
    for said, basis in (("upn", "identifier"), ("nhs_number", "identifier"),
                        ("name_dob", "demographic"), (None, "demographic")):
        with respx.mock(using="httpx", assert_all_called=True) as router:
            record = {"type": "resident", "postcode": "GU1 1AA", "since": "2026-01-12"}
            if said:
                record["matched_on"] = said
            router.post(f"{LA_BASE}/cme/v1/enquiries").respond(
                200, json={"result": "match", "records": [record]})
            result = await _search(OtherLAConnector(OtherLASettings(las={"852": LA_BASE})),
                                   subject)
        assert result.evidence[0].match_basis == basis, said


async def test_lpd_matches_on_the_upn_when_it_has_one_and_on_names_otherwise() -> None:
    from connectors import TraceSubject

    with_upn = TraceSubject(reference="CME-1", upn="H801200001001")
    names_only = TraceSubject(reference="CME-2", forename="A", surname="B",
                              dob="2015-01-01")  # type: ignore[arg-type]
    for subject, basis in ((with_upn, "identifier"), (names_only, "demographic")):
        with respx.mock(using="httpx") as router:
            router.post(f"{LPD_BASE}/s2s/v1/lost-pupils/search").respond(
                200, content=CTF_FOUND, headers={"content-type": "application/xml"})
            result = await _search(LPDConnector(ConnectorSettings(base_url=LPD_BASE)), subject)
        assert result.evidence[0].match_basis == basis
