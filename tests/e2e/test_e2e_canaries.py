"""No personal data leaves the case database, except in the ``case-report`` artifact.

A real stack (Prefect server, sandbox agencies, deployments, worker) on a *canary world*:
every child's name, street, parent, UPN, postcode and date of birth is a value that cannot
occur by chance (``canarykit``). Intake (the import file and the Mendix feed), two nights,
the officer flows (trace, record a reply, close, a case report), two runs that fail on
purpose, school updates and every dispatch run through the worker. Then everything the stack
shows — Prefect logs, flow/task runs (names, parameters, states and their messages),
deployments, artifacts, events, the processes' console logs, result storage and the
outbox's messages — is read back and scanned. Only the case report may hold canaries; the
messages may say who a child is only by reference and initials.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from canarykit import CanaryWorld, Harvest, Scanner, canary_world, harvest
from rich.console import Console
from uikit import new_auth_string, run

pytestmark = pytest.mark.e2e

CHILDREN = 40
SEED = 11
UNKNOWN = "CME-2026-999999"


@dataclass
class Trial:
    world: CanaryWorld
    runs: dict[str, Any]
    harvest: Harvest
    seconds: float
    #: references the officer flows were run on, by purpose
    refs: dict[str, str]
    #: wall time of the stack's start, the runs and the harvest, s
    phases: dict[str, float]


def _first(world: CanaryWorld, *scenarios: str) -> str:
    for s in scenarios:
        refs = world.references(s)
        if refs:
            return refs[0]
    raise AssertionError(f"the canary world has no referral with scenario {scenarios}")


def _side_by_side(runs: dict[str, Any], wave: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Run deployments at once (the worker starts a process for each); wait for all."""
    with ThreadPoolExecutor(max_workers=len(wave)) as pool:
        # Each thread runs in a copy of this context: it holds the stack's Prefect settings.
        futures = {k: pool.submit(contextvars.copy_context().run, run, d, p)
                   for k, (d, p) in wave.items()}
        runs.update({k: f.result() for k, f in futures.items()})


def _officer_day(stack: Any, world: CanaryWorld) -> tuple[dict[str, Any], dict[str, str]]:
    """Intake, two nights, the officer flows, two failing runs, school updates."""
    # Through the API a choice is the words the officer's form shows.
    from flows.adhoc import Agency, AgencyAnswer, CloseReason

    today = world.world.today
    refs = {
        "trace": _first(world, "housing_in_area", "resident_other_la"),
        "record": _first(world, "nothing", "lpd_xxx_only"),
        "close": _first(world, "safeguarding", "on_roll_other_la"),
    }
    runs: dict[str, Any] = {}
    runs["intake"] = run("intake/intake", {})
    runs["night1"] = run("nightly-tracing/nightly", {"today": today.isoformat()})
    # The deferred agencies (DWP, Border Force) answer a day after the request.
    httpx.post(f"{stack.sandbox_url}/_sandbox/advance", params={"days": 1},
               timeout=10).raise_for_status()
    runs["night2"] = run("nightly-tracing/nightly",
                         {"today": (today + timedelta(days=1)).isoformat()})
    # Officers' runs on different cases, side by side (the case database is SQLite in WAL
    # mode; the outbox's claims keep concurrent dispatches apart).
    _side_by_side(runs, {
        "trace": ("trace-referral/trace-referral", {"reference": refs["trace"]}),
        "record": ("record-agency-response/record-agency-response",
                   {"reference": refs["record"], "agency": Agency.dwp.value,
                    "answer": AgencyAnswer.found.value,
                    "la_code": "852", "agency_reference": "DWP-CANARY-1"}),
        "close": ("close-case/close-case",
                  {"reference": refs["close"], "reason": CloseReason.other.value,
                   "note": "Closed after the strategy meeting"}),
        "school_updates": ("school-updates/school-updates", {}),
    })
    # Then two runs that fail on purpose, and two case reports.
    _side_by_side(runs, {
        "trace_closed": ("trace-referral/trace-referral", {"reference": refs["close"]}),
        "trace_unknown": ("trace-referral/trace-referral", {"reference": UNKNOWN}),
        "report_traced": ("case-report/case-report", {"reference": refs["trace"]}),
        "report_closed": ("case-report/case-report", {"reference": refs["close"]}),
    })
    return runs, refs


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trial]:
    from prefect.settings import temporary_settings

    from cme.cli_ui import free_port, start_stack, stop_stack
    from policy import london_date

    started = time.perf_counter()
    since = datetime.now(UTC) - timedelta(minutes=5)
    home = tmp_path_factory.mktemp("cme-ui-canary")
    world = canary_world(CHILDREN, SEED, london_date(datetime.now(UTC)))
    world.write(home / "sandbox-world")  # start_stack keeps a world it finds there
    out = Console(stderr=True)
    port = free_port()
    sandbox_port = free_port()
    while sandbox_port == port:
        sandbox_port = free_port()
    stack = start_stack(home, port=port, sandbox_port=sandbox_port, children=CHILDREN,
                        seed=SEED, auth=new_auth_string(), scheduler=False, out=out)
    procs = dict(stack.procs)
    phases = {"stack": time.perf_counter() - started}
    try:
        with temporary_settings(updates=stack.prefect_settings()):
            runs, refs = _officer_day(stack, world)
            phases["runs"] = time.perf_counter() - started - sum(phases.values())
            harvested = harvest(stack, since)
            phases["harvest"] = time.perf_counter() - started - sum(phases.values())
    finally:
        stop_stack(stack, out=out)
        left = {name: p.pid for name, p in procs.items() if p.poll() is None}
        assert not left, f"processes left running: {left}"
    # The console logs again, with whatever the processes wrote while stopping.
    harvested.texts["console"] = [
        (p.name, p.read_text(encoding="utf-8", errors="replace"))
        for p in sorted(stack.logs.glob("*.log"))]
    yield Trial(world=world, runs=runs, harvest=harvested,
                seconds=time.perf_counter() - started, refs=refs,
                phases={k: round(v) for k, v in phases.items()})


def _report(hits: list[Any], limit: int = 20) -> str:
    return "\n".join(str(h) for h in hits[:limit]) + (
        f"\n… and {len(hits) - limit} more" if len(hits) > limit else "")


def test_the_canary_world_went_through_intake_nights_and_officer_flows(trial: Trial) -> None:
    states = {k: r.state.type.value for k, r in trial.runs.items()}
    must_complete = set(trial.runs) - {"trace_closed", "trace_unknown"}
    assert all(trial.runs[k].state.is_completed() for k in must_complete), states
    # Both the import file and the Mendix feed delivered canary children (the held-back
    # referrals only the feed had), and the outbox has messages about canary cases.
    emails = dict(trial.harvest.texts["emails"])
    assert any(ref in text for ref in trial.world.held_back for text in emails.values()), (
        "no acknowledgement for a referral taken in from the Mendix feed")
    assert any(trial.refs["record"] in text for text in emails.values())
    print(f"\ncanary trial: {trial.seconds:.0f} s {trial.phases}; "
          f"scanned {trial.harvest.counts()}")


def test_failing_runs_fail_with_the_reference_and_no_personal_data(trial: Trial) -> None:
    closed, unknown = trial.runs["trace_closed"], trial.runs["trace_unknown"]
    assert closed.state.is_failed(), closed.state
    assert unknown.state.is_failed(), unknown.state
    # The exception reached the state message (so the scan below reads it) ...
    assert trial.refs["close"] in (closed.state.message or ""), closed.state.message
    assert UNKNOWN in (unknown.state.message or ""), unknown.state.message
    # ... and it names the case by reference only.
    scanner = trial.world.scanner()
    for name, fr in (("trace_closed", closed), ("trace_unknown", unknown)):
        assert not scanner.hits("state", name, fr.state.model_dump_json())


def test_the_scanner_finds_the_canaries_in_the_case_report(trial: Trial) -> None:
    """Positive control: the one place personal data belongs is read back and caught."""
    reports = trial.harvest.case_reports
    assert len(reports) >= 2, sorted(reports)
    scanner = trial.world.scanner()
    for purpose in ("trace", "close"):
        ref = trial.refs[purpose]
        child = trial.world.by_reference[ref]
        text = next(md for label, md in reports.items() if ref.lower() in label.lower())
        found = {h.what for h in scanner.hits("case-report", ref, text)}
        assert {"canary name/street/email", f"UPN of {child.world_id}",
                f"DOB of {child.world_id}", f"postcode of {child.world_id}"} <= found, found


def test_every_output_source_was_read(trial: Trial) -> None:
    counts = trial.harvest.counts()
    for source in ("logs", "flow_runs", "states", "task_runs", "deployments", "artifacts",
                   "events", "console", "emails"):
        assert counts.get(source, 0) > 0, f"nothing read from {source}: {counts}"
    # Failure messages and run summaries are among what was scanned.
    logs = " ".join(text for _, text in trial.harvest.texts["logs"])
    assert UNKNOWN in logs
    labels = {label for label, _ in trial.harvest.texts["artifacts"]}
    assert {"artifact nightly-summary", "artifact intake-summary"} <= labels, labels
    events = " ".join(label for label, _ in trial.harvest.texts["events"])
    assert "prefect.flow-run.Failed" in events


@pytest.mark.parametrize("source", ["logs", "flow_runs", "states", "task_runs",
                                    "deployments", "work_pools", "artifacts", "events",
                                    "result_storage"])
def test_no_canary_reaches_the_prefect_server(trial: Trial, source: str) -> None:
    scanner = trial.world.scanner()
    hits = Harvest(texts={source: trial.harvest.texts.get(source, [])}).scan(scanner)
    assert not hits, _report(hits)


def test_no_canary_in_the_console_output_of_server_worker_and_flow_runs(trial: Trial) -> None:
    scanner = trial.world.scanner()
    # The sandbox is the simulated outside world: the agencies are sent personal data by
    # design (minimised per agency), so what it prints is not ours to police.
    console = [(n, t) for n, t in trial.harvest.texts["console"] if n != "sandbox.log"]
    assert {"server.log", "worker.log", "import.log", "deploy.log"} <= {n for n, _ in console}
    hits = Harvest(texts={"console": console}).scan(scanner)
    assert not hits, _report(hits)


def test_messages_name_children_only_by_reference_and_initials(trial: Trial) -> None:
    scanner: Scanner = trial.world.scanner()
    emails = trial.harvest.texts["emails"]
    hits = Harvest(texts={"emails": emails}).scan(scanner)
    assert not hits, _report(hits)
    # What they do say: the reference and the initials (every canary child is Z.Z.).
    text = " ".join(t for _, t in emails)
    assert "(pupil Z.Z.)" in text
