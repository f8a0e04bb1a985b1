"""The bench's no-orchestration baseline makes exactly the requests the connectors make
(bench/_baseline.py), so pipeline / baseline compares like with like."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_baseline_requests_are_the_connectors_first_night_requests() -> None:
    from connectors import load_enabled, run_connector, run_deferred_submit
    from sandbox import Sandbox, asgi_transport, connector_settings, generate_world, subject_for

    world, _ = generate_world(15, 3)
    sb = Sandbox(world)
    settings = connector_settings("http://sandbox", world=world)
    subjects = [subject_for(c, f"REF-{n}") for n, c in enumerate(world.children)]
    for conn in load_enabled(list(settings), settings=settings):
        run = run_deferred_submit if conn.deferred else run_connector
        await run(conn, subjects, transport=asgi_transport(sb))
    made = Counter((r.path, json.dumps(r.fields, sort_keys=True)) for r in sb.seen)

    s = settings
    urls = {"other_la": s["other_la"].las, "housing": s["housing"].base_url,
            "lpd": s["lpd"].base_url, "dwp": s["dwp"].base_url,
            "border_force": s["border_force"].base_url}
    work = _load("_baseline").requests_for([x.model_dump(mode="json") for x in subjects], urls)
    planned = Counter((urlsplit(url).path, json.dumps(body, sort_keys=True))
                      for items in work.values() for url, body in items)
    assert planned == made


def test_physical_bound_is_the_busiest_agency() -> None:
    bench = _load("nightly")
    assert bench.physical_bound({"housing": 11_000, "lpd": 1_000}, 50, 20) == 27.5


def test_cme_bench_nightly_passes_its_options_to_the_script() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from cme.cli import main; main()", "bench", "nightly", "--help"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "--scale" in out.stdout and "--postgres" in out.stdout


def _pipe(served: dict[str, int]) -> dict[str, object]:
    return {"wall_s": 100.0, "served": served, "peak_rss_mb": 170.0,
            "children_peak_rss_mb": 0.0, "task_runs": 7, "checks_written": 500,
            "notifications_queued": 3, "cpu_s": 80.0, "children_cpu_s": 0.0,
            "agencies_cpu_s": 40.0, "prefect_server_cpu_s": 5.0}


def test_a_row_compares_the_pipeline_with_the_baseline_and_the_bound() -> None:
    nightly = _load("nightly")
    served = {"housing": 1100, "lpd": 100}
    baseline = {"wall_s": 80.0, "requests": served, "served": served, "cpu_s": 60.0,
                "agencies_cpu_s": 40.0}
    r = nightly.row(100, "sqlite", "thread", 100, baseline, _pipe(served), 50.0, 20)
    assert r["bound_s"] == 1100 * 0.05 / 20  # the busiest agency's requests × L / C
    assert r["pipeline_over_baseline"] == 100.0 / 80.0 and r["same_requests"] is True
    assert r["cpu_ratio"] == (80 + 40 + 5) / (60 + 40)


def test_a_row_without_a_baseline_leaves_its_ratios_blank_and_still_has_the_bound() -> None:
    """--skip-baseline (a long N measured for the pipeline alone): nothing is made up."""
    nightly = _load("nightly")
    served = {"housing": 1100, "lpd": 100}
    r = nightly.row(100, "sqlite", "thread", 100, {"skipped": True}, _pipe(served), 50.0, 20)
    assert r["baseline_s"] is None and r["pipeline_over_baseline"] is None
    assert r["cpu_ratio"] is None and r["same_requests"] is None
    assert r["bound_s"] == 1100 * 0.05 / 20 and r["pipeline_over_bound"] == 100.0 / 2.75
    table = nightly.markdown([r], {"latency_ms": 50.0, "concurrency": 20,
                                   "baseline_transport": "httpx", "loadavg_before": "0",
                                   "loadavg_after": "0", "cpus": 2, "started": "now"})
    assert "| — | 100.0 | 2.8 | — |" in table, table


def test_the_default_baseline_is_the_aiohttp_client_and_every_table_names_it() -> None:
    """Issue 17, point 1: the fastest plain client is the default baseline; httpx stays
    selectable; a table says which baseline (and which pipeline transport) it used."""
    from httpx_aiohttp import AiohttpTransport

    nightly, baseline = _load("nightly"), _load("_baseline")
    assert nightly.parser().parse_args([]).baseline_transport == "aiohttp"
    assert nightly.parser().parse_args(["--baseline-transport", "httpx"]
                                       ).baseline_transport == "httpx"
    client = baseline._client(20, "aiohttp")
    assert isinstance(client._transport, AiohttpTransport)
    assert client._transport.limits.max_connections == 20  # the pool is the cap, as httpx's
    served = {"housing": 1100, "lpd": 100}
    r = nightly.row(100, "sqlite", "thread", 100, {"wall_s": 80.0, "requests": served,
                    "served": served, "cpu_s": 60.0, "agencies_cpu_s": 40.0},
                    _pipe(served), 50.0, 20)
    for kind in ("aiohttp", "httpx"):
        table = nightly.markdown([r], {
            "latency_ms": 50.0, "concurrency": 20, "baseline_transport": f"{kind} (one ...)",
            "pipeline_transport": "aiohttp (default)", "loadavg_before": "0",
            "loadavg_after": "0", "cpus": 2, "started": "now"})
        assert table.splitlines()[0] == (f"Baseline: plain client on the {kind} transport; "
                                         "pipeline on the aiohttp (default) transport.")
        assert f"| baseline ({kind}) s |" in table
