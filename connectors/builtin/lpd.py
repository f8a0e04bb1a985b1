"""The Lost Pupil Database (LPD) on DfE's School to School (S2S) service.

Searches by UPN when we have one, otherwise by forename + surname + date of birth — and only
then are the names sent. The answer is CTF XML (parsed with ``defusedxml``: no entities, no
DTDs). A CTF's destination is an LA + establishment, or ``XXX``/``XXXX`` (destination
unknown) or ``MMM``/``MMMM`` (abroad / outside the maintained system). Wire API::

    POST {base}/s2s/v1/lost-pupils/search   {"upn"}  or  {"forename", "surname", "dob"}
    200 application/xml
        <LostPupilSearch matches="N"><CTfile><Header>...<SourceSchool><LEA/><Estab/></SourceSchool>
        <DestSchool><LEA/><Estab/></DestSchool></Header><CTFpupilData><Pupil>...
        <LeavingDate/></Pupil></CTFpupilData></CTfile>...</LostPupilSearch>
    GET  {base}/s2s/v1/health               200 {"status": "ok"}
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError  # noqa: S405 - types only

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from .._contract import Connector
from .._errors import MalformedResponse
from .._models import Evidence, Query, Result
from .._resilience import AgencyHTTP
from ._util import as_date


def _text(node: Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def parse_lpd_response(body: bytes) -> list[Evidence]:
    """Evidence from an LPD search answer; :class:`MalformedResponse` if it is not one."""
    try:
        root = DET.fromstring(body)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise MalformedResponse("lpd: response is not safe, well-formed XML") from exc
    if root.tag != "LostPupilSearch":
        raise MalformedResponse("lpd: unexpected XML document")
    out: list[Evidence] = []
    for ctf in root.findall("CTfile"):
        header = ctf.find("Header")
        src_la = _text(header, "SourceSchool/LEA")
        src_estab = _text(header, "SourceSchool/Estab")
        dest_la = _text(header, "DestSchool/LEA")
        dest_estab = _text(header, "DestSchool/Estab")
        if not dest_la:
            raise MalformedResponse("lpd: CTF without a destination LEA")
        leaving = as_date(_text(ctf, "CTFpupilData/Pupil/LeavingDate"))
        if dest_la in ("XXX", "MMM"):
            destination = dest_la
        else:
            destination = f"{dest_la}/{dest_estab}" if dest_estab else dest_la
        out.append(Evidence(
            kind="ctf",
            source=f"LPD (CTF from {src_la or '?'}/{src_estab or '?'})",
            ctf_destination=destination,
            ctf_destination_la=dest_la,
            ctf_destination_establishment=dest_estab,
            ctf_leaving_date=leaving,
            la_code=dest_la if dest_la.isdigit() else None,
            date_seen=leaving,
        ))
    declared = root.get("matches")
    if declared is not None and declared.isdigit() and int(declared) != len(out):
        raise MalformedResponse("lpd: match count does not agree with the CTFs")
    return out


class LPDConnector(Connector):
    name = "lpd"
    version = "1.0.0"
    agency = "Lost Pupil Database (DfE S2S)"
    fields = frozenset({"upn", "forename", "surname", "dob"})
    rate_limit = 50.0
    max_concurrency = 10

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        # UPN alone when we have it: names and DOB are sent only when there is no UPN.
        upn = query.upn
        body = {"upn": upn} if upn else query.payload("forename", "surname", "dob")
        response = http.expect(
            await http.post(self.url("s2s/v1/lost-pupils/search"), json=body), (200,)
        )
        evidence = parse_lpd_response(response.content)
        # The LPD matched on what it was asked: the UPN (an identifier) or names + DOB.
        basis = "identifier" if upn else "demographic"
        evidence = [e.model_copy(update={"match_basis": basis}) for e in evidence]
        return Result.found(evidence) if evidence else Result.not_found()

    async def health(self, http: AgencyHTTP) -> str:
        http.expect(await http.get(self.url("s2s/v1/health")), (200,))
        return "S2S answering"
