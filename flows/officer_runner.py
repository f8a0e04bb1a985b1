"""A warm runner for the runs an officer starts and waits for (issue 15, point 7).

A run on the ``cme-process`` work pool starts a new Python process (``python -m
prefect.engine``), which imports Prefect and the project before the flow's first line: most
of the seconds between Submit and Completed of ``trace-referral``, for one or two seconds of
work (README, "Officer-run speed"). This process serves the officer's deployments instead:

- it imports Prefect and the officer flows **once**, then serves the deployments listed in
  :data:`OFFICER_DEPLOYMENTS` with Prefect's own runner (``Runner.add_flow``: the same
  server, deployments, forms and run names; the UI cannot tell the difference);
- each run still gets a process of its own (a crash or a cancel takes only that run down),
  but forked from a *forkserver* that has the modules imported already, instead of Prefect's
  ``spawn`` of a cold interpreter;
- it polls for new runs every second.

The deployments' descriptions and tags come from ``prefect.yaml`` so that what an officer
reads is the same whichever process runs them. The night, the imports and the waiting
decisions stay on the work pool's worker.

    python -m flows.officer_runner            # from the checkout, with the flows' settings
"""

from __future__ import annotations

import argparse
import copy
import importlib
import multiprocessing
import multiprocessing.context
from pathlib import Path
from typing import Any

__all__ = ["OFFICER_DEPLOYMENTS", "PRELOAD", "main", "officer_flows", "serve_officer_flows",
           "use_forkserver_for_flow_runs"]

#: Deployment name → ``module:flow`` of the deployments this runner serves: what an officer
#: starts from the UI and waits for (prefect.yaml holds the same entry points).
OFFICER_DEPLOYMENTS = {
    "trace-referral": "flows.adhoc:trace_referral",
    "record-agency-response": "flows.adhoc:record_agency_response",
    "decide-case": "flows.adhoc:decide_case",
    "close-case": "flows.adhoc:close_case",
    "reopen-case": "flows.adhoc:reopen_case",
    "case-report": "flows.adhoc:case_report",
    "worklist": "flows.worklist:worklist",
}
#: Imported once by the forkserver; every run's process starts with them imported.
PRELOAD = ["prefect.flow_engine", "prefect.runner", "flows.adhoc", "flows.worklist",
           "flows.waiting"]


class _ForkserverInsteadOfSpawn:
    """Stands in for the ``multiprocessing`` module inside ``prefect.flow_engine``: its
    ``get_context("spawn")`` (a cold interpreter per run) answers with a forkserver context
    whose server has :data:`PRELOAD` imported."""

    def __init__(self, ctx: multiprocessing.context.ForkServerContext) -> None:
        self._ctx = ctx

    def get_context(self, method: str | None = None) -> Any:
        return self._ctx if method == "spawn" else multiprocessing.get_context(method)

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


def use_forkserver_for_flow_runs(preload: list[str] | None = None) -> None:
    """Make Prefect's in-process runner start each flow run from a forkserver with
    ``preload`` imported (default :data:`PRELOAD`), not from a cold ``spawn``.

    Prefect 3 (``prefect.flow_engine.run_flow_in_subprocess``) hard-codes the ``spawn``
    start method; its runner calls that function for flows it holds in memory. The run's
    process, its environment, its signals and its exit code are otherwise Prefect's own.
    """
    import prefect.flow_engine

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload or PRELOAD))
    prefect.flow_engine.multiprocessing = _ForkserverInsteadOfSpawn(ctx)  # type: ignore[attr-defined,assignment]


def _flow_named(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def _by_reference(flow: Any, target: str) -> Any:
    """``flow``, pickled as "import ``target``" when the runner hands it to a run's process.

    Prefect pickles a served flow with cloudpickle, which copies the flow's function by value
    (its module's attribute of that name is the flow, not the function) with only the
    globals its body uses; the copy cannot resolve our flows' string annotations (``from
    __future__ import annotations``), and every run failed "Validation of flow parameters
    failed: ... is not fully defined". By reference, the run's process uses the module the
    forkserver imported.
    """
    from prefect.flows import Flow

    class FlowByReference(type(flow)):  # type: ignore[misc]
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return _flow_named, (target,)

    assert isinstance(flow, Flow)
    served = copy.copy(flow)
    served.__class__ = FlowByReference
    return served


def _described(prefect_yaml: Path) -> dict[str, dict[str, Any]]:
    import yaml

    spec = yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")) or {}
    return {d["name"]: d for d in spec.get("deployments", []) if "name" in d}


def officer_flows(prefect_yaml: Path) -> list[tuple[Any, dict[str, Any]]]:
    """``(flow, its deployment in prefect_yaml)`` for each officer deployment. A deployment
    missing from ``prefect_yaml``, or running another flow there, is an error (the two lists
    must not drift apart)."""
    described = _described(prefect_yaml)
    out = []
    for name, target in OFFICER_DEPLOYMENTS.items():
        if name not in described:
            raise SystemExit(f"prefect.yaml has no deployment named {name!r}")
        spec = described[name]
        if spec.get("entrypoint", "").replace("/", ".").replace(".py:", ":") != target:
            raise SystemExit(f"prefect.yaml's {name!r} runs {spec.get('entrypoint')!r}, "
                             f"this runner {target!r}")
        out.append((_by_reference(_flow_named(target), target), spec))
    return out


async def _take_over_from_the_pool(flows: list[tuple[Any, dict[str, Any]]]) -> None:
    """Delete the work-pool copies of the officer deployments (``prefect deploy --all``
    makes them): a served deployment of the same name would keep the pool, and the worker
    and this runner would then race for every run."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        for flow, spec in flows:
            try:
                old = await client.read_deployment_by_name(f"{flow.name}/{spec['name']}")
            except ObjectNotFound:
                continue
            if old.work_pool_name:
                await client.delete_deployment(old.id)


async def serve_officer_flows(prefect_yaml: Path, *, poll_seconds: int = 1) -> None:
    """Serve the officer deployments until stopped (SIGTERM)."""
    from prefect.runner import Runner

    flows = officer_flows(prefect_yaml)
    await _take_over_from_the_pool(flows)
    # pause_on_shutdown=False: the officer deployments have no schedules to pause, and a
    # stopped stack must not leave them paused for the next one.
    runner = Runner(name="cme-officer-runner", pause_on_shutdown=False,
                    query_seconds=poll_seconds)
    for flow, spec in flows:
        # add_flow (not add_deployment): the runner keeps the flow in memory and starts its
        # runs with run_flow_in_subprocess, which use_forkserver_for_flow_runs makes warm.
        await runner.aadd_flow(flow, name=spec["name"], description=spec.get("description"),
                               tags=spec.get("tags"),
                               concurrency_limit=spec.get("concurrency_limit"))
    await runner.start()


def main(argv: list[str] | None = None) -> None:
    import asyncio

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefect-yaml", type=Path, default=Path("prefect.yaml"))
    ap.add_argument("--poll-seconds", type=int, default=1,
                    help="how often to look for new runs (default 1)")
    args = ap.parse_args(argv)
    use_forkserver_for_flow_runs()
    # Start the forkserver (and its imports) now, not on the officer's first Submit.
    from multiprocessing import forkserver

    forkserver.ensure_running()
    asyncio.run(serve_officer_flows(args.prefect_yaml, poll_seconds=args.poll_seconds))


if __name__ == "__main__":
    main()
