"""Submit → Completed of an officer's run on a warm UI stack (issue 15, point 7).

Against a stack started with ``cme ui up`` (or any server with the ``trace-referral``
deployment and a worker), it starts ``trace-referral`` for a reference, as the UI's Submit
does (a flow run created from the deployment), and reads back from the server's state history
where the time went:

- **pick-up**: Scheduled → Pending, the worker (or the warm officer runner of `cme ui up`)
  noticing the run (its polling interval);
- **start-up**: Pending → Running, a new Python process: Prefect, the pull step and the
  flow module's imports;
- **work**: Running → Completed, the flow itself;
- **seen**: Submit → the client seeing Completed (polling every 0.2 s).

    python bench/officer_latency.py --home .cme-ui --auth USER:PASS --runs 5
    python bench/officer_latency.py --api http://127.0.0.1:4200/api --reference CME-2026-000001
    python bench/officer_latency.py --importtime   # where the flow module's import time goes

Prints one line per run and the median, and ``--json FILE`` writes them. Not a test: the
figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEPLOYMENT = "trace-referral/trace-referral"


def _stack_api(home: Path) -> tuple[str, str | None]:
    from cme.cli_ui import load_stack

    stack = load_stack(home)
    if stack is None:
        sys.exit(f"no stack recorded in {home}: start one with `cme ui up --home {home}`")
    refs = [json.loads(line)["mendix_reference"]
            for line in stack.referrals_path.read_text(encoding="utf-8").splitlines()[:1]
            if line.strip()]
    return stack.api_url, refs[0] if refs else None


async def one_run(deployment_id: Any, reference: str) -> dict[str, float]:
    from prefect import get_client

    async with get_client() as client:
        submitted = time.monotonic()
        run = await client.create_flow_run_from_deployment(
            deployment_id, parameters={"reference": reference})
        while True:
            fr = await client.read_flow_run(run.id)
            if fr.state is not None and fr.state.is_final():
                break
            await asyncio.sleep(0.2)
        seen = time.monotonic() - submitted
        states = await client.read_flow_run_states(run.id)
    at = {}
    for s in sorted(states, key=lambda s: s.timestamp):
        at.setdefault(s.type.value, s.timestamp)

    def between(a: str, b: str) -> float:
        return (at[b] - at[a]).total_seconds() if a in at and b in at else float("nan")

    return {"seen": round(seen, 2), "pick_up": round(between("SCHEDULED", "PENDING"), 2),
            "start_up": round(between("PENDING", "RUNNING"), 2),
            "work": round(between("RUNNING", fr.state.type.value), 2),
            "final": fr.state.type.value}  # type: ignore[dict-item]


async def measure(reference: str, runs: int) -> list[dict[str, float]]:
    from prefect import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)
    out = []
    for n in range(runs):
        row = await one_run(deployment.id, reference)
        print(f"run {n + 1}: Submit→Completed {row['seen']:.1f} s (pick-up {row['pick_up']:.1f}, "
              f"start-up {row['start_up']:.1f}, work {row['work']:.1f}) {row['final']}",
              flush=True)
        out.append(row)
    return out


def importtime(module: str = "flows.adhoc", top: int = 12) -> list[tuple[int, str]]:
    """The ``top`` imports by cumulative time (µs) when a fresh process imports ``module``."""
    err = subprocess.run(  # noqa: S603 - this Python, a module name of ours
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True, text=True, check=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, raw = line.split(":", 1)[1].split("|")
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2  # two spaces a level
        rows.append((int(cumulative), raw.strip(), depth))
    total = max(rows)[0] if rows else 0
    print(f"importing {module} in a fresh process: {total / 1e6:.2f} s; its direct imports "
          f"by cumulative time:")
    tops = sorted(((us, name) for us, name, depth in rows if depth == 1), reverse=True)[:top]
    for us, name in tops:
        print(f"  {us / 1e6:6.2f} s  {name}")
    return tops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=Path(".cme-ui"),
                    help="the folder `cme ui up` used (default .cme-ui)")
    ap.add_argument("--api", help="the Prefect API URL instead of --home's stack")
    ap.add_argument("--auth", default=os.environ.get("PREFECT_API_AUTH_STRING"),
                    help="the server's basic-auth string, if on")
    ap.add_argument("--reference", help="the case to trace (default: the first referral)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--importtime", action="store_true",
                    help="also show where the flow module's import time goes")
    ap.add_argument("--json", type=Path, help="write the runs here as JSON")
    args = ap.parse_args()

    if args.importtime:
        importtime()
    api, first = (args.api, None) if args.api else _stack_api(args.home)
    reference = args.reference or first
    if not reference:
        sys.exit("give --reference")
    os.environ["PREFECT_API_URL"] = api
    if args.auth:
        os.environ["PREFECT_API_AUTH_STRING"] = args.auth
    rows = asyncio.run(measure(reference, args.runs))
    med = {k: round(statistics.median(r[k] for r in rows), 2)
           for k in ("seen", "pick_up", "start_up", "work")}
    print(f"median of {len(rows)}: Submit→Completed {med['seen']:.1f} s (pick-up "
          f"{med['pick_up']:.1f}, start-up {med['start_up']:.1f}, work {med['work']:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "median": med}, indent=1))


if __name__ == "__main__":
    main()
