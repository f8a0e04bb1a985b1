"""Hostile answers from agencies (issue 8, point 3): every built-in connector, through the
real runner and resilience layer, against

- XML attacks in a CTF answer to the Lost Pupil Database connector: billion laughs,
  quadratic blow-up, external entities (file and network), parameter entities, an external
  DTD, XInclude, 100,000-deep nesting;
- bodies over the size cap: declared, streamed without end, lying about their length,
  and compressed (gzip and deflate bombs), plus a content coding we do not speak;
- JSON nested 100,000 deep, bare and inside the expected envelope;
- generated JSON answers (hypothesis) of every shape.

Each check ends as a :class:`~connectors.Result` — found / not found / pending, or an error
whose kind fits (a hostile body is ``permanent``: asking again gets the same answer) with a
message that repeats neither the child's details nor the body — never an exception. Nothing
hangs (the endless body is cut at the cap) and memory stays bounded: the compressed bombs
are checked with ``tracemalloc`` (no timing anywhere).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import logging
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import (
    CheckOutcome,
    Connector,
    ConnectorSettings,
    Outcome,
    Result,
    run_connector,
    run_deferred_poll,
    run_deferred_submit,
)
from connectors.builtin.border_force import BorderForceConnector
from connectors.builtin.dwp import DWPConnector
from connectors.builtin.housing import HousingConnector, HousingSettings
from connectors.builtin.lpd import LPDConnector
from connectors.builtin.other_la import OtherLAConnector, OtherLASettings
from connectors.testing import DEFAULT_SUBJECT

CAP = 1_000_000
SETTINGS = {"max_attempts": 2, "backoff_initial": 0.0, "backoff_max": 0.0,
            "max_response_bytes": CAP, "timeout": 5.0, "connect_timeout": 1.0}
FACTORIES: dict[str, Callable[[], Connector]] = {
    "other_la": lambda: OtherLAConnector(OtherLASettings(las={"852": "https://la852.test"})),
    "housing": lambda: HousingConnector(HousingSettings(base_url="https://housing.test",
                                                        councils=["eastleigh"])),
    "lpd": lambda: LPDConnector(ConnectorSettings(base_url="https://s2s.test/lpd")),
    "dwp": lambda: DWPConnector(ConnectorSettings(base_url="https://dwp.test")),
    "border_force": lambda: BorderForceConnector(
        ConnectorSettings(base_url="https://borderforce.test")),
}
#: (connector, operation): every way an agency's body reaches our parsers.
OPERATIONS = [("other_la", "search"), ("housing", "search"), ("lpd", "search"),
              ("dwp", "submit"), ("dwp", "poll"), ("border_force", "submit"),
              ("border_force", "poll")]
OP_IDS = [f"{c}-{o}" for c, o in OPERATIONS]
PII = [v for v in (DEFAULT_SUBJECT.upn, DEFAULT_SUBJECT.forename, DEFAULT_SUBJECT.surname,
                   DEFAULT_SUBJECT.postcode, DEFAULT_SUBJECT.address_line,
                   DEFAULT_SUBJECT.parent_surname, DEFAULT_SUBJECT.nhs_number,
                   *DEFAULT_SUBJECT.former_surnames) if v]
PII += [DEFAULT_SUBJECT.dob.isoformat(), DEFAULT_SUBJECT.dob.strftime("%d/%m/%Y")] \
    if DEFAULT_SUBJECT.dob else []
SENTINEL = "SENTINEL-LEAK-5521"


def make(name: str) -> Connector:
    connector = FACTORIES[name]()
    connector.settings = connector.settings.model_copy(update=SETTINGS)
    return connector


async def _no_sleep(_seconds: float) -> None:
    return None


@dataclass
class Run:
    outcome: CheckOutcome
    requests: int

    @property
    def result(self) -> Result:
        return self.outcome.result


def check(name: str, operation: str,
          answer: Callable[[httpx.Request], httpx.Response]) -> Run:
    """One check of the synthetic child, every request answered by ``answer``."""
    connector = make(name)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    kw: dict[str, Any] = {"transport": httpx.MockTransport(handler), "sleep": _no_sleep}

    async def go() -> list[CheckOutcome]:
        if operation == "search":
            return await run_connector(connector, [DEFAULT_SUBJECT], **kw)
        if operation == "submit":
            return await run_deferred_submit(connector, [DEFAULT_SUBJECT], **kw)
        return await run_deferred_poll(connector, [(DEFAULT_SUBJECT.reference, "REF-0001")],
                                       **kw)

    (outcome,) = asyncio.run(go())
    return Run(outcome, len(seen))


def assert_refused(run: Run, code: str, *, body_markers: tuple[str, ...] = ()) -> None:
    """A permanent error with ``code`` and a message free of personal data and the body."""
    result = run.result
    assert result.outcome is Outcome.ERROR, result
    assert (result.error_kind, result.error_code) == ("permanent", code), result
    assert_clean(result, body_markers)


def assert_clean(result: Result, body_markers: tuple[str, ...] = ()) -> None:
    text = result.model_dump_json()
    for value in [*PII, SENTINEL, *body_markers]:
        assert value not in text, (value, result.message)


def assert_logs_clean(caplog: pytest.LogCaptureFixture, markers: tuple[str, ...] = ()) -> None:
    for record in caplog.records:
        line = record.getMessage()
        for value in [*PII, SENTINEL, *markers]:
            assert value not in line, (value, line)


def respond(body: bytes, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, content=body, headers=headers)


# --- XML attacks on the CTF parser ----------------------------------------------------------


@pytest.fixture
def sentinel_files(tmp_path: Path) -> dict[str, str]:
    text = tmp_path / "secret.txt"
    text.write_text(SENTINEL, encoding="utf-8")
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY leak "{SENTINEL}">', encoding="utf-8")
    return {"text": text.as_uri(), "dtd": dtd.as_uri()}


def _ctf(dest_la: str) -> str:
    return ("<CTfile><Header><SourceSchool><LEA>850</LEA><Estab>2001</Estab></SourceSchool>"
            f"<DestSchool><LEA>{dest_la}</LEA><Estab>4001</Estab></DestSchool></Header>"
            "<CTFpupilData><Pupil><LeavingDate>2026-01-09</LeavingDate></Pupil>"
            "</CTFpupilData></CTfile>")


_LAUGHS = ['<!ENTITY lol0 "lol">'] + [
    f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
]
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [' + "".join(_LAUGHS) + "]>"
                  '<LostPupilSearch matches="1">' + _ctf("&lol9;") + "</LostPupilSearch>")
QUADRATIC = ('<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + "A" * 50_000 + '">]>'
             '<LostPupilSearch matches="1">' + _ctf("&a;" * 20_000) + "</LostPupilSearch>")


def xml_attacks(files: dict[str, str]) -> dict[str, str]:
    return {
        "billion-laughs": BILLION_LAUGHS,
        "quadratic-blowup": QUADRATIC,
        "external-entity-file": (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                                 f'"{files["text"]}">]><LostPupilSearch matches="1">'
                                 + _ctf("&e;") + "</LostPupilSearch>"),
        "external-entity-http": ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                                 '"http://127.0.0.1:9/secret">]><LostPupilSearch matches="1">'
                                 + _ctf("&e;") + "</LostPupilSearch>"),
        "parameter-entity": (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM '
                             f'"{files["dtd"]}"> %p;]><LostPupilSearch matches="1">'
                             + _ctf("&leak;") + "</LostPupilSearch>"),
        "external-dtd-entity": (f'<?xml version="1.0"?><!DOCTYPE LostPupilSearch SYSTEM '
                                f'"{files["dtd"]}"><LostPupilSearch matches="1">'
                                + _ctf("&leak;") + "</LostPupilSearch>"),
    }


@pytest.mark.parametrize("attack", ["billion-laughs", "quadratic-blowup",
                                    "external-entity-file", "external-entity-http",
                                    "parameter-entity", "external-dtd-entity"])
def test_xml_attacks_in_a_ctf_answer_are_refused(attack: str, sentinel_files: dict[str, str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = xml_attacks(sentinel_files)[attack].encode()
    run = check("lpd", "search", respond(body, **{"content-type": "application/xml"}))
    assert_refused(run, "malformed_response", body_markers=("lol", "AAAA", "ENTITY"))
    assert run.requests == 1  # a permanent error: not asked again
    assert_logs_clean(caplog, ("lol", "AAAA", "ENTITY"))


@pytest.mark.parametrize("attack", ["external-dtd", "xinclude"])
def test_xml_that_only_points_elsewhere_is_not_followed(attack: str,
                                                        sentinel_files: dict[str, str]) -> None:
    """An external DTD that is never used, an XInclude: the parser reads neither; the
    answer is what the document itself says (no CTFs: not found)."""
    body = {
        "external-dtd": (f'<!DOCTYPE LostPupilSearch SYSTEM "{sentinel_files["dtd"]}">'
                         '<LostPupilSearch matches="0"/>'),
        "xinclude": ('<LostPupilSearch xmlns:xi="http://www.w3.org/2001/XInclude" matches="0">'
                     f'<xi:include href="{sentinel_files["text"]}" parse="text"/>'
                     "</LostPupilSearch>"),
    }[attack].encode()
    run = check("lpd", "search", respond(body))
    assert run.result.outcome is Outcome.NOT_FOUND, run.result
    assert_clean(run.result)


def test_xml_nested_100k_deep_is_refused_not_a_crash() -> None:
    body = (b'<LostPupilSearch matches="1">' + b"<a>" * 100_000 + b"</a>" * 100_000
            + b"</LostPupilSearch>")
    assert_refused(check("lpd", "search", respond(body)), "malformed_response")


# --- bodies over the cap --------------------------------------------------------------------


@dataclass
class Endless:
    """A body that never ends (no Content-Length), counting what was pulled from it."""

    chunk: bytes = b"{" + b" " * 65_535
    pulled: int = 0

    async def stream(self) -> AsyncIterator[bytes]:
        while True:
            self.pulled += 1
            yield self.chunk


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OP_IDS)
def test_a_declared_oversized_body_is_refused(name: str, operation: str) -> None:
    run = check(name, operation, respond(b"[" + b"0," * (CAP // 2) + b"0]"))
    assert_refused(run, "response_too_large")


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OP_IDS)
def test_an_endless_body_is_cut_at_the_cap(name: str, operation: str) -> None:
    bodies: list[Endless] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(Endless())
        return httpx.Response(200, content=bodies[-1].stream())

    assert_refused(check(name, operation, answer), "response_too_large")
    assert bodies and all(b.pulled <= CAP // len(b.chunk) + 2 for b in bodies)


def test_a_body_longer_than_its_declared_length_is_still_cut() -> None:
    endless = Endless()
    run = check("other_la", "search", lambda r: httpx.Response(
        200, content=endless.stream(), headers={"content-length": "20"}))
    assert_refused(run, "response_too_large")


@functools.cache
def _bomb(coding: str) -> bytes:
    zeros = b"\0" * 60_000_000
    if coding == "gzip":
        return gzip.compress(zeros, compresslevel=9)
    return zlib.compress(zeros, 9)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize(("name", "operation"), [("other_la", "search"), ("lpd", "search"),
                                                 ("dwp", "poll")])
def test_a_compression_bomb_is_cut_at_the_cap_in_bounded_memory(
    name: str, operation: str, coding: str,
) -> None:
    bomb = _bomb(coding)  # ~60 kB that inflate to 60 MB

    async def network_chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(bomb), 65_536):  # as a socket would deliver it
            yield bomb[i:i + 65_536]

    tracemalloc.start()
    try:
        run = check(name, operation, lambda r: httpx.Response(
            200, content=network_chunks(), headers={"content-encoding": coding}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_refused(run, "response_too_large")
    assert peak < 8 * CAP, f"decoding held {peak / 1e6:.0f} MB for a {CAP / 1e6:.0f} MB cap"


def test_a_small_compressed_answer_is_still_read() -> None:
    body = gzip.compress(json.dumps({"result": "no_match"}).encode())

    async def once() -> AsyncIterator[bytes]:
        yield body

    run = check("other_la", "search", lambda r: httpx.Response(
        200, content=once(), headers={"content-encoding": "gzip"}))
    assert run.result.outcome is Outcome.NOT_FOUND, run.result


@pytest.mark.parametrize("coding", ["br", "gzip, gzip", "compress"])
def test_a_content_coding_we_do_not_speak_is_refused(coding: str) -> None:
    async def once() -> AsyncIterator[bytes]:
        yield b"\x1b\x00\x00\x00garbage"

    run = check("housing", "search", lambda r: httpx.Response(
        200, content=once(), headers={"content-encoding": coding}))
    assert_refused(run, "malformed_response")


# --- JSON nested 100,000 deep ---------------------------------------------------------------

DEEP = 100_000
DEEP_BODIES = {
    "bare-array": b"[" * DEEP + b"]" * DEEP,
    "bare-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "in-envelope": (b'{"result": "match", "matches": [], "status": "answered", "records": ['
                    + b"[" * DEEP + b"]" * DEEP + b"]}"),
}


@pytest.mark.parametrize("shape", sorted(DEEP_BODIES))
@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OP_IDS)
def test_json_nested_100k_deep_is_refused(name: str, operation: str, shape: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    run = check(name, operation, respond(DEEP_BODIES[shape]))
    assert_refused(run, "malformed_response")
    assert_logs_clean(caplog)


# --- generated answers ----------------------------------------------------------------------

_scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(
    allow_nan=False) | st.text(max_size=12) | st.sampled_from(
    ["match", "no_match", "answered", "pending", "on_roll", "resident", "current",
     "forwarding", "departure", "arrival", "2026-01-09", "850", "116123", "SO23 8ZZ",
     "REF-0001"]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(
                         ["result", "records", "matches", "status", "reference",
                          "expected_by", "type", "school_urn", "since", "address_line",
                          "postcode", "address_type", "la_code", "recorded_on", "address",
                          "line1", "movements", "direction", "date", "country",
                          "safeguarding", "town"]), inner, max_size=6), max_leaves=20)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=_json, as_xml=st.booleans())
@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=OP_IDS)
def test_generated_answers_end_as_a_result_never_an_exception(
    name: str, operation: str, body: Any, as_xml: bool,
) -> None:
    raw = json.dumps(body).encode()
    if name == "lpd" and as_xml:
        raw = b'<LostPupilSearch matches="1">' + _ctf("MMM").encode() + raw \
            + b"</LostPupilSearch>"
    run = check(name, operation, respond(raw))
    result = run.result
    assert result.outcome in (Outcome.FOUND, Outcome.NOT_FOUND, Outcome.PENDING,
                              Outcome.ERROR), result
    if result.outcome is Outcome.ERROR:
        assert result.error_kind == "permanent", result
        assert result.message
        for value in PII:  # (a found answer may of course carry the agency's postcode)
            assert value not in result.message, result.message
