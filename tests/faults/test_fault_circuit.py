"""A dead agency's circuit stops the calls: every built-in, with its own declared
concurrency and the default breaker threshold, against the sandbox served on a loopback port
with every agency down. At most the threshold plus what was already in flight reaches it —
also for the fan-out connectors (other LAs, the councils), whose requests queue behind the
concurrency cap while the circuit opens.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from faultkit import AGENCIES, Served, serve

from connectors import Outcome, load_enabled, run_connector, run_deferred_submit
from sandbox import (
    AgencyFaults,
    World,
    connector_settings,
    generate_world,
    subject_for,
    write_generated,
)


@pytest.fixture(scope="module")
def all_down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, World]]:
    root: Path = tmp_path_factory.mktemp("circuit")
    world, referrals = generate_world(30, 5, today=date(2026, 11, 23))
    paths = write_generated(world, referrals, root / "world")
    with serve(paths["world"], log=root / "sandbox.log") as served:
        served.put_faults({a: AgencyFaults(outage=True) for a in AGENCIES}, seed=1)
        yield served, world


@pytest.mark.parametrize("transport", ("httpx", "aiohttp"))
@pytest.mark.parametrize("name", AGENCIES)
async def test_a_dead_agency_sees_at_most_the_threshold_plus_what_was_in_flight(
        all_down: tuple[Served, World], name: str, transport: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_HTTP_TRANSPORT", transport)
    served, world = all_down
    settings = connector_settings(served.base_url, world=world, backoff_initial=0.0,
                                  backoff_max=0.0, circuit_cooldown=3600.0)
    (conn,) = load_enabled([name], settings={name: settings[name]})
    subjects = [subject_for(c) for c in world.children]
    served.clear_logs()
    run = run_deferred_submit if conn.deferred else run_connector
    outcomes = await run(conn, subjects)

    calls = [s for s in served.seen() if s.agency == name]
    bound = conn.settings.circuit_threshold + conn.effective_max_concurrency - 1
    assert len(calls) <= bound, (
        f"{name}: {len(calls)} calls reached a dead agency; the circuit should have stopped "
        f"them after {bound} (threshold {conn.settings.circuit_threshold} + "
        f"{conn.effective_max_concurrency - 1} in flight)")
    assert conn.breaker.state == "open"
    assert len(outcomes) == len(subjects)
    assert all(o.outcome is Outcome.ERROR for o in outcomes)
    codes = {o.result.error_code for o in outcomes}
    assert "circuit_open" in codes and codes <= {"circuit_open", "http_503"}, codes
    # a check the circuit refused before anything was sent discloses nothing
    for o in outcomes:
        if o.http_calls == 0:
            assert o.disclosed_fields == ()
