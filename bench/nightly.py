"""Benchmark: one night's tracing at county and national scale, against a no-orchestration
baseline and the physical bound (issue 7). Not a test: it measures, it asserts nothing.

    python bench/nightly.py                      # N = 10,000, thread and Dask runners
    python bench/nightly.py --n 1000 --runners thread
    python bench/nightly.py --scale              # N in 1,000 / 10,000 / 50,000
    python bench/nightly.py --postgres postgresql://cme:pw@127.0.0.1:5433/cme   # + PostgreSQL
    cme bench nightly --n 1000                   # the same, from the CLI

For each N it generates a synthetic world of N children and imports its referrals into a
template case database (cached in ``bench/results/cache/``), then serves each of the five
agencies as a real HTTP server on loopback, **one process per agency** (``cme sandbox
serve``), every one with latency L (``--latency-ms``, 50) and a concurrency cap C
(``--concurrency``, 20; more in flight get 429 + Retry-After). Then:

* **baseline**: ``bench/_baseline.py`` makes exactly the requests the connectors make, in
  plain asyncio + httpx under the same caps, and writes nothing; by default on
  ``httpx-aiohttp``'s transport, the fastest plain client measured here
  (``--baseline-transport httpx``: httpx's own); every table names the baseline it used;
* **pipeline**: the real nightly flow (``flows/nightly.py``), in a process of its own
  (``bench/_flowrun.py``), against a Prefect server this script starts, on a fresh copy of
  the template database, with each task runner in ``--runners``; then ``trace-referral`` for
  one referral against the same warm server;
* **physical bound**: max over agencies of (requests to that agency × L / C).

Results (JSON and a markdown table) go to ``bench/results/`` (git-ignored) and are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
AGENCIES = ("other_la", "housing", "lpd", "dwp", "border_force")
TODAY = date(2026, 3, 2)  # the generator's default world date; every referral is due on it
SCALE = (1_000, 10_000, 50_000)

if str(ROOT) not in sys.path:  # `python bench/nightly.py` from a checkout
    sys.path.insert(0, str(ROOT))


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class Processes:
    """Long-running helper processes, each stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,  # noqa: S603
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def cpu_seconds(pids: list[int]) -> float:
    """CPU (user + system) used so far by these processes, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def _cme() -> str:
    return str(Path(sys.executable).with_name("cme"))


SERVICE_PIDS: dict[str, list[int]] = {"agencies": [], "prefect": []}


def start_prefect_server(procs: Processes, work: Path, database_url: str | None = None) -> str:
    """A Prefect server on its own SQLite file, or on PostgreSQL when ``database_url`` is
    given (``PREFECT_SERVER_DATABASE_CONNECTION_URL``, the production layout)."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect-server"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    if database_url:
        from sqlalchemy.engine import make_url

        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = make_url(database_url).set(
            drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    proc = procs.start([str(Path(sys.executable).with_name("prefect")), "server", "start",
                        "--host", "127.0.0.1", "--port", str(port)],
                       work / "logs" / "prefect-server.log", env)
    api = f"http://127.0.0.1:{port}/api"
    _wait_http(f"{api}/health", 180, proc)
    SERVICE_PIDS["prefect"] = [proc.pid]
    return api


def start_agencies(procs: Processes, work: Path, world: Path, latency_ms: float,
                   concurrency: int) -> dict[str, str]:
    """One sandbox process per agency; returns agency → base URL of its server."""
    work.mkdir(parents=True, exist_ok=True)
    faults = work / "faults.json"
    faults.write_text(json.dumps({"seed": 0, "default": {
        "latency_ms": latency_ms, "max_concurrency": concurrency}}), encoding="utf-8")
    bases: dict[str, str] = {}
    started = []
    for agency in AGENCIES:
        port = free_port()
        proc = procs.start([_cme(), "sandbox", "serve", "--world", str(world), "--faults",
                            str(faults), "--port", str(port), "--today", TODAY.isoformat(),
                            "--no-request-log"], work / "logs" / f"sandbox-{agency}.log")
        bases[agency] = f"http://127.0.0.1:{port}"
        started.append((agency, proc))
    for agency, proc in started:
        _wait_http(f"{bases[agency]}/_sandbox/today", 300, proc)
    SERVICE_PIDS["agencies"] = [proc.pid for _, proc in started]
    return bases


def agency_urls(bases: dict[str, str], world_path: Path) -> dict[str, Any]:
    """The base URL each connector is given (other_la: one per LA, as the sandbox env)."""
    from sandbox import connector_env, load_world

    la = json.loads(connector_env(bases["other_la"], world=load_world(world_path))
                    ["CME_OTHER_LA_LAS"])
    return {"other_la": la, "housing": f"{bases['housing']}/housing",
            "lpd": f"{bases['lpd']}/lpd", "dwp": f"{bases['dwp']}/dwp",
            "border_force": f"{bases['border_force']}/border-force"}


def connector_environment(urls: dict[str, Any], concurrency: int) -> dict[str, str]:
    env = {
        "CME_OTHER_LA_LAS": json.dumps(urls["other_la"]),
        "CME_HOUSING_BASE_URL": urls["housing"], "CME_LPD_BASE_URL": urls["lpd"],
        "CME_DWP_BASE_URL": urls["dwp"], "CME_BORDER_FORCE_BASE_URL": urls["border_force"],
    }
    for name in AGENCIES:
        env[f"CME_{name.upper()}_ALLOW_HTTP"] = "true"
        env[f"CME_{name.upper()}_RATE_LIMIT"] = "100000"  # the agencies' caps throttle
        env[f"CME_{name.upper()}_MAX_CONCURRENCY"] = str(concurrency)
    return env


def sandbox_counts(bases: dict[str, str], reset: bool = False) -> dict[str, int]:
    out = {}
    for agency, base in bases.items():
        out[agency] = int(httpx.get(f"{base}/_sandbox/counts", timeout=10).json().get(agency, 0))
        if reset:
            httpx.delete(f"{base}/_sandbox/requests", timeout=10)
    return out


# --- the world and the template database -------------------------------------------------


def prepare_world(n: int, seed: int, cache: Path) -> dict[str, Path]:
    """World + referrals + a template SQLite database with every referral imported and
    acknowledged (cached: generating and importing 50,000 referrals takes minutes)."""
    folder = cache / f"world-{n}-seed{seed}"
    template = folder / "template.db"
    if template.exists():
        return {"world": folder / "world.json", "referrals": folder / "referrals.jsonl",
                "template": template, "folder": folder}
    from sandbox import generate_world, write_generated

    started = time.perf_counter()
    world, referrals = generate_world(n, seed, today=TODAY)
    paths = write_generated(world, referrals, folder)
    building = folder / "building.db"
    building.unlink(missing_ok=True)
    import_into(f"sqlite:///{building}", paths["referrals"], folder / "setup-outbox")
    building.rename(template)
    print(f"  world of {n} and its template database in {time.perf_counter() - started:.0f} s",
          flush=True)
    return {**paths, "template": template, "folder": folder}


def import_into(db_url: str, referrals: Path, outbox: Path) -> None:
    """Import and acknowledge every referral (the day's intake), outside Prefect."""
    import asyncio
    from itertools import islice

    from models import get_engine
    from models.migrate import upgrade
    from tasks.dispatch import dispatch_outbox
    from tasks.intake import ingest_records, read_jsonl
    from tests.la_configs import dispatch_config, intake_config

    upgrade(db_url)
    cfg = intake_config(db_url=db_url, channel="file", signpost_contacts={})
    records = read_jsonl(referrals)
    while batch := list(islice(records, 500)):
        ingest_records(batch, source=referrals.name, cfg=cfg)
    asyncio.run(dispatch_outbox(dispatch_config(db_url=db_url, channel="file",
                                                channel_options={"outbox_dir": outbox})))
    shutil.rmtree(outbox, ignore_errors=True)
    engine = get_engine(db_url)
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


def fresh_sqlite(template: Path, run_dir: Path) -> str:
    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "cme.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, db)
    return f"sqlite:///{db}"


def fresh_postgres(base_url: str, n: int, seed: int, referrals: Path, work: Path) -> str:
    """A fresh database copied from a per-(N, seed) template database on that server."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base_url).set(drivername="postgresql")
    tpl, run = f"cme_bench_tpl_{n}_{seed}", "cme_bench_run"
    plain = url.render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (tpl,)).fetchone()
    if not exists:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{tpl}"')
        import_into(url.set(database=tpl).render_as_string(hide_password=False), referrals,
                    work / "setup-outbox")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{run}" TEMPLATE "{tpl}"')
    return url.set(database=run).render_as_string(hide_password=False)


def due_subjects(db_url: str) -> tuple[list[dict[str, Any]], str]:
    """The subjects the night will trace, built as the pipeline builds them; and the
    reference of one of them (for the ad-hoc trace)."""
    from sqlmodel import Session, col, select

    from models import Child, Referral, School, get_engine
    from tasks.tracing import _subject, select_due

    ids = select_due(db_url, TODAY)
    out = []
    with Session(get_engine(db_url)) as s:
        for i in range(0, len(ids), 500):
            rows = s.exec(select(Referral, Child, School)
                          .join(Child, col(Child.id) == Referral.child_id)
                          .join(School, col(School.id) == Referral.school_id)
                          .where(col(Referral.id).in_(ids[i:i + 500]))
                          .order_by(col(Referral.id))).all()
            out.extend(_subject(r, c, sc).model_dump(mode="json") for r, c, sc in rows)
    get_engine(db_url).dispose()
    return out, out[len(out) // 2]["reference"]


def db_counts(db_url: str) -> dict[str, int]:
    from sqlalchemy import func
    from sqlmodel import Session, select

    from models import Check, Notification, get_engine

    with Session(get_engine(db_url)) as s:
        out = {"checks": int(s.exec(select(func.count()).select_from(Check)).one()),
               "notifications": int(s.exec(select(func.count())
                                           .select_from(Notification)).one())}
    get_engine(db_url).dispose()
    return out


# --- the three measurements ----------------------------------------------------------------


def physical_bound(requests: dict[str, int], latency_ms: float, concurrency: int) -> float:
    return max(n * latency_ms / 1000 / concurrency for n in requests.values())


def run_baseline(job: Path, transport: str, bases: dict[str, str]) -> dict[str, Any]:
    sandbox_counts(bases, reset=True)
    agencies_cpu = cpu_seconds(SERVICE_PIDS["agencies"])
    out = subprocess.run([sys.executable, str(BENCH / "_baseline.py"), str(job),  # noqa: S603
                          "--transport", transport], check=True, capture_output=True)
    result: dict[str, Any] = _last_json(out.stdout)
    result["agencies_cpu_s"] = cpu_seconds(SERVICE_PIDS["agencies"]) - agencies_cpu
    result["served"] = sandbox_counts(bases, reset=True)
    return result


def _prefect_get(api: str, path: str) -> Any:
    return httpx.get(f"{api}{path}", timeout=30).json()


def task_runs_of(api: str, flow_run_id: str) -> int:
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    return int(httpx.post(f"{api}/task_runs/count", json=body, timeout=30).json())


def flow_time(api: str, flow_run_id: str) -> float | None:
    fr = _prefect_get(api, f"/flow_runs/{flow_run_id}")
    if fr.get("start_time") and fr.get("end_time"):
        start = datetime.fromisoformat(fr["start_time"])
        end = datetime.fromisoformat(fr["end_time"])
        return (end - start).total_seconds()
    return None


def _last_json(stdout: bytes) -> Any:
    """The last JSON line a child printed (py-spy adds lines of its own)."""
    lines = [ln for ln in stdout.decode().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def run_pipeline(*, api: str, db_url: str, runner: str, urls: dict[str, Any], concurrency: int,
                 chunk_size: int | None, run_dir: Path, bases: dict[str, str],
                 trace_reference: str | None, profile: str | None,
                 http_transport: str | None = None) -> dict[str, Any]:
    sandbox_counts(bases, reset=True)
    before = db_counts(db_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CME_", "PREFECT_"))}
    env.update(connector_environment(urls, concurrency))
    env.update({
        "CME_DATABASE_URL": db_url, "CME_CONNECTORS": ",".join(AGENCIES),
        "CME_NOTIFICATION_CHANNEL": "file", "CME_OUTBOX_DIR": str(run_dir / "outbox"),
        "CME_TASK_RUNNER": runner, "PREFECT_API_URL": api,
        "PREFECT_HOME": str(run_dir / "prefect-client"), "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT),
    })
    if chunk_size:
        env["CME_CHUNK_SIZE"] = str(chunk_size)
    if http_transport:
        env["CME_HTTP_TRANSPORT"] = http_transport
    cmd = [sys.executable, str(BENCH / "_flowrun.py"), "--today", TODAY.isoformat()]
    if profile == "pyinstrument":
        cmd += ["--pyinstrument", str(run_dir / "profile.html")]
    elif profile == "py-spy":
        cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
               "--rate", "50", "--subprocesses", "-o", str(run_dir / "py-spy.txt"), "--", *cmd]
    agencies_cpu = cpu_seconds(SERVICE_PIDS["agencies"])
    prefect_cpu = cpu_seconds(SERVICE_PIDS["prefect"])
    started = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, cwd=run_dir)  # noqa: S603
    process_wall = time.perf_counter() - started
    agencies_cpu = cpu_seconds(SERVICE_PIDS["agencies"]) - agencies_cpu
    prefect_cpu = cpu_seconds(SERVICE_PIDS["prefect"]) - prefect_cpu
    (run_dir / "flowrun.log").write_bytes(out.stdout + b"\n--- stderr ---\n" + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"the flow process failed ({out.returncode}); see "
                           f"{run_dir / 'flowrun.log'}")
    result: dict[str, Any] = _last_json(out.stdout)
    result["process_wall_s"] = process_wall
    result["agencies_cpu_s"] = agencies_cpu
    result["prefect_server_cpu_s"] = prefect_cpu
    result["served"] = sandbox_counts(bases, reset=True)
    result["task_runs"] = task_runs_of(api, result["flow_run_id"])
    result["flow_time_s"] = flow_time(api, result["flow_run_id"])
    after = db_counts(db_url)
    result["checks_written"] = after["checks"] - before["checks"]
    result["notifications_queued"] = after["notifications"] - before["notifications"]
    if trace_reference:  # the officer's ad-hoc trace, against the same warm server
        out = subprocess.run(cmd[cmd.index(sys.executable):]  # noqa: S603
                             + ["--trace-only", "--trace-reference", trace_reference],
                             env=env, capture_output=True, cwd=run_dir)
        if out.returncode != 0:
            (run_dir / "trace.log").write_bytes(out.stdout + out.stderr)
            raise RuntimeError(f"trace-referral failed; see {run_dir / 'trace.log'}")
        tr = _last_json(out.stdout)
        tr["flow_time_s"] = flow_time(api, tr["flow_run_id"])
        tr["task_runs"] = task_runs_of(api, tr["flow_run_id"])
        result["trace_referral"] = tr
        sandbox_counts(bases, reset=True)
    return result


def default_transport() -> str:
    """The transport the flow uses when ``CME_HTTP_TRANSPORT`` is unset."""
    from connectors._transport import TransportSettings

    return str(TransportSettings.model_fields["http_transport"].default)


# --- report ----------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    baseline = meta["baseline_transport"].split(" ", 1)[0]
    title = (f"Baseline: plain client on the {baseline} transport; pipeline on the "
             f"{meta.get('pipeline_transport', 'default')} transport.")
    head = (f"| N | app DB | task runner | referrals traced | baseline ({baseline}) s | "
            "pipeline s | "
            "bound s | pipeline / baseline | pipeline / bound | CPU pipeline / baseline | "
            "peak RSS MB (flow) | task runs | checks / s | notifications queued | "
            "trace-referral flow s |")
    lines = [title, "", head, "|" + " --- |" * 15]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['db']} | {r['runner']} | {r['traced']:,} | "
            f"{_fmt(r['baseline_s'])} | {_fmt(r['pipeline_s'])} | {_fmt(r['bound_s'])} | "
            f"{_fmt(r['pipeline_over_baseline'], 2)} | {_fmt(r['pipeline_over_bound'], 2)} | "
            f"{_fmt(r['cpu_ratio'], 2)} | {_fmt(r['peak_rss_mb'], 0)} | {r['task_runs']} | "
            f"{_fmt(r['checks_per_s'], 0)} | "
            f"{r['notifications_queued']:,} | {_fmt(r['trace_referral_flow_s'], 2)} |")
    lines.append("")
    lines.append("CPU = CPU seconds of every process involved (client or flow and its Dask "
                 "workers, the five agency servers, and for the pipeline the Prefect server).")
    lines.append("")
    lines.append(f"Prefect server database: {meta.get('prefect_server_db', 'sqlite')}.")
    lines.append("")
    lines.append(f"L = {meta['latency_ms']:g} ms, C = {meta['concurrency']} per agency; "
                 f"baseline transport: {meta['baseline_transport']}; "
                 f"load average before/after: {meta['loadavg_before']} / "
                 f"{meta['loadavg_after']}; {meta['cpus']} CPUs; {meta['started']}.")
    return "\n".join(lines) + "\n"


def row(n: int, db: str, runner: str, traced: int, baseline: dict[str, Any],
        pipe: dict[str, Any], latency_ms: float, concurrency: int) -> dict[str, Any]:
    wall = pipe["wall_s"]
    if baseline.get("skipped"):
        # --skip-baseline: no reference run; the bound comes from the pipeline's own requests.
        baseline = {"wall_s": None, "requests": pipe["served"], "served": None,
                    "cpu_s": None, "agencies_cpu_s": None}
    bound = physical_bound(baseline["requests"], latency_ms, concurrency)
    b_wall, b_cpu = baseline["wall_s"], baseline["cpu_s"]
    return {
        "n": n, "db": db, "runner": runner, "traced": traced,
        "baseline_s": baseline["wall_s"], "pipeline_s": wall, "bound_s": bound,
        "pipeline_over_baseline": wall / b_wall if b_wall else None,
        "pipeline_over_bound": wall / bound,
        "peak_rss_mb": pipe["peak_rss_mb"], "children_peak_rss_mb": pipe["children_peak_rss_mb"],
        "task_runs": pipe["task_runs"],
        "checks_per_s": pipe["checks_written"] / wall,
        "checks_written": pipe["checks_written"],
        "notifications_queued": pipe["notifications_queued"],
        "trace_referral_flow_s": (pipe.get("trace_referral") or {}).get("flow_time_s"),
        "requests_baseline": baseline["served"], "requests_pipeline": pipe["served"],
        "same_requests": (baseline["served"] == pipe["served"]
                          if baseline["served"] is not None else None),
        "flow_time_s": pipe.get("flow_time_s"),
        # CPU seconds, less disturbed than wall time when the machine is shared
        "baseline_cpu_s": {"client": baseline["cpu_s"], "agencies": baseline["agencies_cpu_s"]},
        "pipeline_cpu_s": {"flow": pipe["cpu_s"], "flow_children": pipe["children_cpu_s"],
                           "agencies": pipe["agencies_cpu_s"],
                           "prefect_server": pipe["prefect_server_cpu_s"]},
        "cpu_ratio": (pipe["cpu_s"] + pipe["children_cpu_s"] + pipe["agencies_cpu_s"]
                      + pipe["prefect_server_cpu_s"])
        / (b_cpu + baseline["agencies_cpu_s"]) if b_cpu is not None else None,
    }


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def write_results(out: Path, stamp: str, rows: list[dict[str, Any]],
                  details: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Write ``nightly-<stamp>.json`` and ``.md`` (what has been measured so far)."""
    meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    table = markdown(rows, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"nightly-{stamp}.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "details": details}, indent=1, default=str),
        encoding="utf-8")
    (out / f"nightly-{stamp}.md").write_text(table, encoding="utf-8")
    return table


def parser() -> argparse.ArgumentParser:
    """The command line of this script (``cme bench nightly`` passes its options on)."""
    ap = argparse.ArgumentParser(description="One night's tracing: pipeline vs a plain "
                                 "asyncio client (httpx-aiohttp by default) vs the physical "
                                 "bound.")
    ap.add_argument("--n", type=int, default=10_000, help="open referrals (default 10,000)")
    ap.add_argument("--scale", action="store_true", help="N in 1,000 / 10,000 / 50,000")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--runners", default="thread,dask",
                    help="task runners to measure, comma-separated (thread, dask)")
    ap.add_argument("--postgres", metavar="URL", default=None,
                    help="also run on PostgreSQL: a URL whose role may CREATE DATABASE")
    ap.add_argument("--prefect-postgres", metavar="URL", default=None,
                    help="run the Prefect server on this PostgreSQL database (it must exist "
                    "and be empty or Prefect's own) instead of its SQLite file")
    ap.add_argument("--chunk-size", type=int, default=None, help="CME_CHUNK_SIZE (default: "
                    "the setting's default)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--baseline-transport", choices=("aiohttp", "httpx"), default="aiohttp",
                    help="the plain client's transport (default aiohttp: httpx-aiohttp, the "
                    "fastest measured here)")
    ap.add_argument("--pipeline-transport", choices=("aiohttp", "httpx"), default=None,
                    help="CME_HTTP_TRANSPORT for the flow (default: the setting's default)")
    ap.add_argument("--profile", choices=("pyinstrument", "py-spy"), default=None,
                    help="profile the flow process (first runner only)")
    ap.add_argument("--skip-baseline", action="store_true",
                    help="measure the pipeline only (ratios to the baseline left blank)")
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    sizes = list(SCALE) if args.scale else [args.n]
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    dbs = ["sqlite"] + (["postgresql"] if args.postgres else [])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = args.out / f"run-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "started": stamp, "latency_ms": args.latency_ms, "concurrency": args.concurrency,
        "baseline_transport": f"{args.baseline_transport} (one AsyncClient per agency, pool = "
        "C, C workers)", "cpus": os.cpu_count(),
        "pipeline_transport": args.pipeline_transport or f"{default_transport()} (default)",
        "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "sizes": sizes, "runners": runners, "dbs": dbs, "seed": args.seed,
        "prefect_server_db": "postgresql" if args.prefect_postgres else "sqlite",
    }
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    with processes() as procs:
        print("starting a Prefect server ...", flush=True)
        api = start_prefect_server(procs, work, args.prefect_postgres)
        for n in sizes:
            print(f"N = {n:,}: world and template database ...", flush=True)
            paths = prepare_world(n, args.seed, args.out / "cache")
            subjects, trace_ref = due_subjects(f"sqlite:///{paths['template']}")
            print(f"N = {n:,}: {len(subjects):,} referrals due; starting 5 agency servers "
                  f"(L = {args.latency_ms:g} ms, C = {args.concurrency}) ...", flush=True)
            agency_procs_before = list(procs.procs)
            bases = start_agencies(procs, work / f"n{n}", paths["world"], args.latency_ms,
                                   args.concurrency)
            urls = agency_urls(bases, paths["world"])
            job = work / f"n{n}" / "baseline-job.json"
            job.write_text(json.dumps({"subjects": subjects, "urls": urls,
                                       "concurrency": args.concurrency}), encoding="utf-8")
            if args.skip_baseline:
                baseline: dict[str, Any] = {"skipped": True}
            else:
                print(f"N = {n:,}: baseline ...", flush=True)
                baseline = run_baseline(job, args.baseline_transport, bases)
                print(f"  baseline ({args.baseline_transport}) {baseline['wall_s']:.1f} s, "
                      f"requests {baseline['requests']}", flush=True)
            for db in dbs:
                for i, runner in enumerate(runners):
                    run_dir = work / f"n{n}" / f"{db}-{runner}"
                    if db == "sqlite":
                        db_url = fresh_sqlite(paths["template"], run_dir)
                    else:
                        db_url = fresh_postgres(args.postgres, n, args.seed,
                                                paths["referrals"], run_dir)
                    print(f"N = {n:,}: pipeline ({db}, {runner}) ...", flush=True)
                    pipe = run_pipeline(
                        api=api, db_url=db_url, runner=runner, urls=urls,
                        concurrency=args.concurrency, chunk_size=args.chunk_size,
                        run_dir=run_dir, bases=bases, trace_reference=trace_ref,
                        profile=args.profile if (i == 0 and db == "sqlite") else None,
                        http_transport=args.pipeline_transport)
                    r = row(n, db, runner, len(subjects), baseline, pipe, args.latency_ms,
                            args.concurrency)
                    rows.append(r)
                    details.append({"n": n, "db": db, "runner": runner, "baseline": baseline,
                                    "pipeline": pipe})
                    print(f"  pipeline {r['pipeline_s']:.1f} s = "
                          f"{_fmt(r['pipeline_over_baseline'], 2)} × baseline, "
                          f"{r['pipeline_over_bound']:.2f} × bound; RSS "
                          f"{r['peak_rss_mb']:.0f} MB; {r['task_runs']} task runs; same "
                          f"requests: {r['same_requests']}", flush=True)
                    # After every run, so an interrupted --scale keeps what it measured.
                    write_results(args.out, stamp, rows, details, meta)
                    if db == "sqlite":
                        for suffix in ("", "-wal", "-shm"):  # keep results/ small
                            Path(f"{run_dir / 'cme.db'}{suffix}").unlink(missing_ok=True)
                        shutil.rmtree(run_dir / "outbox", ignore_errors=True)
            for proc in [p for p in procs.procs if p not in agency_procs_before]:
                procs.stop(proc)
    table = write_results(args.out, stamp, rows, details, meta)
    print()
    print(table)
    print(f"written: {args.out / f'nightly-{stamp}.json'} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
