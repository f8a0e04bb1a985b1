"""Shared helpers of the UI-path tests (imported by name; test folders are not packages)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

AUTH_USER = "cme-officer"
BUILTINS = ("other_la", "housing", "lpd", "dwp", "border_force")
ARTIFACTS = Path(os.environ.get("CME_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))


def new_auth_string() -> str:
    return f"{AUTH_USER}:{secrets.token_urlsafe(12)}"


def references_by_scenario(stack: Any) -> dict[str, list[str]]:
    """Scenario → the references of children referred exactly once (no duplicates)."""
    from sandbox import load_world

    world = load_world(stack.world_path)
    scenario = {(c.forename, c.surname, c.dob.isoformat()): c.scenario for c in world.children}
    records = [json.loads(line) for line in stack.referrals_path.read_text().splitlines()
               if line.strip()]

    def key(rec: dict[str, Any]) -> tuple[str, str, str]:
        c = rec["child"]
        return (c["forename"], c["surname"], c["dob"])

    seen = Counter(key(r) for r in records)
    out: dict[str, list[str]] = {}
    for rec in records:
        k = key(rec)
        if seen[k] == 1 and k in scenario:
            out.setdefault(scenario[k], []).append(rec["mendix_reference"])
    return out


def run(deployment: str, parameters: dict[str, Any], timeout: float = 150) -> Any:
    """Run a deployment through the server and its worker; the finished flow run.

    Runs on its own thread and event loop (with this context's Prefect settings): under
    Playwright's sync API an event loop is already running in the test's thread, and
    Prefect's dispatching ``run_deployment`` would hand back a coroutine there.
    """
    from prefect.deployments import arun_deployment

    async def go() -> Any:
        return await arun_deployment(deployment, parameters=parameters, timeout=timeout,
                                    poll_interval=1)

    ctx = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        flow_run = pool.submit(ctx.run, asyncio.run, go()).result()
    assert flow_run.state is not None and flow_run.state.is_final(), (
        f"{deployment} did not finish in {timeout} s (state {flow_run.state})")
    return flow_run
