"""The warm officer runner (``cme ui up``; flows/officer_runner.py): it serves the officer's
deployments as ``prefect.yaml`` describes them, and its runs' processes start from a
forkserver with the flows imported, not from a cold ``spawn``."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from flows.officer_runner import OFFICER_DEPLOYMENTS, officer_flows

REPO = Path(__file__).resolve().parents[2]


def test_the_runner_serves_the_officer_deployments_described_as_in_prefect_yaml() -> None:
    import yaml

    spec = {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())
            ["deployments"]}
    served = {spec["name"]: (flow, spec) for flow, spec in officer_flows(REPO / "prefect.yaml")}
    assert set(served) == set(OFFICER_DEPLOYMENTS) == {
        "trace-referral", "record-agency-response", "decide-case", "close-case",
        "reopen-case", "case-report", "worklist"}
    for name, (flow, used) in served.items():
        # The officer reads the same description whichever process runs the deployment.
        assert used["description"] == spec[name]["description"] and used["description"]
        module, attr = OFFICER_DEPLOYMENTS[name].split(":")
        assert flow.fn.__module__ == module and flow.fn.__name__ == attr

def test_a_deployment_missing_from_prefect_yaml_stops_the_runner(tmp_path: Path) -> None:
    (tmp_path / "prefect.yaml").write_text("deployments:\n  - name: nightly\n"
                                           "    entrypoint: flows/nightly.py:nightly_tracing\n")
    with pytest.raises(SystemExit, match="no deployment named 'trace-referral'"):
        officer_flows(tmp_path / "prefect.yaml")


def test_flow_runs_start_from_a_forkserver_with_the_flows_imported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import prefect.flow_engine

    from flows.officer_runner import PRELOAD, use_forkserver_for_flow_runs

    monkeypatch.setattr(prefect.flow_engine, "multiprocessing", multiprocessing)
    use_forkserver_for_flow_runs()
    ctx = prefect.flow_engine.multiprocessing.get_context("spawn")
    assert ctx.get_start_method() == "forkserver"
    assert "flows.adhoc" in PRELOAD and "prefect.flow_engine" in PRELOAD
    # Everything else of multiprocessing is untouched.
    assert prefect.flow_engine.multiprocessing.get_context("fork").get_start_method() == "fork"


@pytest.mark.parametrize("name", sorted(OFFICER_DEPLOYMENTS))
def test_a_served_flow_reaches_its_run_process_whole(name: str) -> None:
    # The runner hands the flow to each run's process with cloudpickle; a copy of the
    # function by value lost the names its string annotations use, and every run failed
    # "Validation of flow parameters failed ... is not fully defined".
    import cloudpickle

    flow = {spec["name"]: f for f, spec in officer_flows(REPO / "prefect.yaml")}[name]
    there = cloudpickle.loads(cloudpickle.dumps(flow))
    module, attr = OFFICER_DEPLOYMENTS[name].split(":")
    assert there is getattr(__import__(module, fromlist=[attr]), attr)
    there.validate_parameters({"reference": "CME-2026-000123"} if name != "worklist" else {})
