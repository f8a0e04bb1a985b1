"""The pipeline side of the bench: the real nightly flow, in a process of its own.

Run by ``bench/nightly.py`` with the ``CME_*`` and ``PREFECT_API_URL`` environment set:
``python bench/_flowrun.py --today YYYY-MM-DD [--trace-reference REF]``. Prints one JSON
line: the flow's wall time, its flow run id, the run summary (counts only), and the peak RSS
of this process (``VmHWM``) and of its children (Dask workers, if any).

With ``--trace-only --trace-reference REF`` it runs the officer's ``trace-referral`` flow for
that one referral instead (against the bench's warm server) and reports its flow run id.
With ``--pyinstrument FILE`` the nightly flow runs under pyinstrument's sampling profiler
and its HTML report is written to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _vmhwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _nightly(today: date) -> tuple[dict[str, Any], str]:
    from prefect.context import get_run_context  # noqa: F401 - import cost outside the timing

    from flows.nightly import nightly_tracing

    state = await nightly_tracing(today=today, return_state=True)
    summary = await state.result()  # type: ignore[union-attr]
    return summary, str(state.state_details.flow_run_id)


async def _trace(reference: str) -> tuple[str, float]:
    from flows.adhoc import trace_referral

    started = time.perf_counter()
    state = await trace_referral(reference=reference, return_state=True)
    await state.result()  # type: ignore[union-attr]
    return str(state.state_details.flow_run_id), time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--today", required=True, type=date.fromisoformat)
    ap.add_argument("--trace-reference", default=None)
    ap.add_argument("--trace-only", action="store_true", help="skip the nightly flow")
    ap.add_argument("--pyinstrument", type=Path, default=None)
    args = ap.parse_args(argv)

    import flows.nightly  # noqa: F401 - import cost outside the timing

    if args.trace_only:
        trace_id, trace_wall = asyncio.run(_trace(args.trace_reference))
        sys.stdout.write(json.dumps({"flow_run_id": trace_id, "wall_s": trace_wall}) + "\n")
        return
    profiler = None
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005, async_mode="disabled")
        profiler.start()
    started = time.perf_counter()
    summary, flow_run_id = asyncio.run(_nightly(args.today))
    wall = time.perf_counter() - started
    if profiler is not None:
        profiler.stop()
        args.pyinstrument.write_text(profiler.output_html(), encoding="utf-8")
    out: dict[str, Any] = {
        "wall_s": wall,
        "flow_run_id": flow_run_id,
        "summary": summary,
        "peak_rss_mb": _vmhwm_kb() / 1024,
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "cpu_s": time.process_time(),
        "children_cpu_s": _children_cpu(),
    }
    sys.stdout.write(json.dumps(out, default=str) + "\n")


if __name__ == "__main__":
    main()
