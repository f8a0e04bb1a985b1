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
