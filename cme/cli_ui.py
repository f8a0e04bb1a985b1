"""``cme ui up`` / ``cme ui down``: the Prefect UI path for CME officers, on this machine.

``up`` starts, in a working folder (default ``./.cme-ui``) with its own ``PREFECT_HOME``:

1. ``prefect server start`` on 127.0.0.1 (the API and the UI);
2. the sandbox agencies (``cme sandbox serve``) on a synthetic world it generates once;
3. the ``cme-process`` work pool (created only if missing);
4. the case database (migrated, then the generated referrals imported by the import flow,
   reported to this server so the UI has a run to show);
5. ``prefect deploy --all`` from the checkout's ``prefect.yaml`` (``CME_HOME`` = the checkout);
6. ``prefect worker start --pool cme-process`` with the settings the flows need;
7. the officer runner (``python -m flows.officer_runner``): one warm process that serves the
   deployments an officer starts and waits for (trace-referral, case-report, decide-case,
   …) so that their runs do not wait for a cold Python process (README, "Officer-run
   speed"). ``--no-warm-runner`` leaves them on the worker.

``down`` stops them in the reverse order of their dependants: runner, worker, sandbox,
server.
The same functions (:func:`start_stack`, :func:`stop_stack`) drive the end-to-end tests.

Every process runs in its own process group (so a stop reaches its children) and logs to
``<home>/logs/<name>.log``; their pids are kept in ``<home>/stack.json``. The auth string
of ``--auth`` is never written to that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from cme.errors import CmeError

__all__ = [
    "POOL",
    "Stack",
    "free_port",
    "load_stack",
    "register",
    "start_stack",
    "stop_stack",
]

POOL = "cme-process"
BUILTINS = "other_la,housing,lpd,dwp,border_force"
STATE_FILE = "stack.json"
#: Stop order: nothing may be left polling a server that is gone.
STOP_ORDER = ("runner", "worker", "sandbox", "server")
#: A marker each process's command line must contain before we signal a recorded pid
#: (a pid from an old state file may belong to someone else by now).
_CMDLINE_MARKER = {"server": "server", "worker": "worker", "sandbox": "sandbox",
                   "runner": "flows.officer_runner"}

console = Console()
ui_app = typer.Typer(help="The Prefect UI for CME officers: start or stop a local stack.",
                     no_args_is_help=True)


@dataclass
class Stack:
    """A running (or recorded) UI stack: where it lives, its ports, its processes.

    ``procs`` holds the ``Popen`` objects only in the process that started the stack (so it
    can reap them); ``pids`` is what ``stack.json`` records for ``cme ui down``.
    """

    home: Path
    repo: Path
    port: int
    sandbox_port: int
    auth: str | None = field(default=None, repr=False)
    pids: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    scheduler: bool = True
    #: More ``CME_*`` settings for the deploy, the import, the worker and its flow runs
    #: (tests: e.g. credentials). May hold secrets: never printed, never saved.
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)

    # -- addresses and paths ---------------------------------------------------------------
    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def db_path(self) -> Path:
        return self.home / "cme.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def world_dir(self) -> Path:
        return self.home / "sandbox-world"

    @property
    def world_path(self) -> Path:
        return self.world_dir / "world.json"

    @property
    def referrals_path(self) -> Path:
        return self.world_dir / "referrals.jsonl"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    # -- environments ----------------------------------------------------------------------
    def server_env(self) -> dict[str, str]:
        env = _clean_env()
        env.update({
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # The UI asks this address for its API; the default is port 4200 whatever --port.
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": str(self.scheduler).lower(),
            # Officers work in this UI: no Prefect Cloud adverts (one, a toast, can sit over
            # a form's Submit button; docs/officer-guide.md).
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        })
        if self.auth:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth
        return env

    def client_env(self) -> dict[str, str]:
        """What a Prefect client (CLI, worker, flow run) needs to talk to this server."""
        env = _clean_env()
        env.update({
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Officers wait for ad-hoc runs: poll every 2 s rather than the default 10 s.
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        })
        if self.auth:
            env["PREFECT_API_AUTH_STRING"] = self.auth
        return env

    def flow_env(self) -> dict[str, str]:
        """The client environment plus the ``CME_*`` settings the flows read."""
        from sandbox import connector_env, load_world

        world = load_world(self.world_path)
        env = self.client_env()
        env.update(connector_env(self.sandbox_url, world=world))
        env.update({
            "CME_HOME": str(self.repo),
            "CME_DATABASE_URL": self.db_url,
            "CME_CONNECTORS": BUILTINS,
            "CME_NOTIFICATION_CHANNEL": "file",
            "CME_OUTBOX_DIR": str(self.outbox),
            "CME_MENDIX_BASE_URL": f"{self.sandbox_url}/mendix/odata",
            "CME_MENDIX_USERNAME": world.mendix.username,
            "CME_MENDIX_PASSWORD": world.mendix.password,
        })
        env.update(self.extra_env)
        return env

    def prefect_settings(self) -> dict[Any, Any]:
        """Settings for ``prefect.settings.temporary_settings`` in this process (tests)."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

        updates: dict[Any, Any] = {PREFECT_API_URL: self.api_url}
        if self.auth:
            updates[PREFECT_API_AUTH_STRING] = self.auth
        return updates

    def http_auth(self) -> httpx.BasicAuth | None:
        if not self.auth:
            return None
        user, _, password = self.auth.partition(":")
        return httpx.BasicAuth(user, password)

    # -- state -----------------------------------------------------------------------------
    def save(self) -> None:
        state = {"repo": str(self.repo), "port": self.port, "sandbox_port": self.sandbox_port,
                 "auth": bool(self.auth), "pids": self.pids,
                 "updated": datetime.now(UTC).isoformat()}
        (self.home / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")

    def running(self) -> dict[str, int]:
        """The recorded processes that are still alive (and still ours)."""
        return {n: p for n, p in self.pids.items() if _ours(n, p)}


# ---- public functions ---------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def load_stack(home: Path) -> Stack | None:
    """The stack recorded in ``home`` (its pids may be stale), or None."""
    path = Path(home).resolve() / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text(encoding="utf-8"))
    return Stack(home=path.parent, repo=Path(state["repo"]), port=int(state["port"]),
                 sandbox_port=int(state["sandbox_port"]),
                 pids={k: int(v) for k, v in state.get("pids", {}).items()})


def start_stack(
    home: Path,
    *,
    repo: Path | None = None,
    port: int = 4200,
    sandbox_port: int = 8765,
    children: int = 40,
    seed: int = 7,
    auth: str | None = None,
    scheduler: bool = True,
    timeout: float = 180.0,
    warm_runner: bool = True,
    out: Console | None = None,
    extra_env: Mapping[str, str] | None = None,
    secret_blocks: Mapping[str, str] | None = None,
) -> Stack:
    """Bring the whole UI stack up and return it; on any failure stop what was started.

    ``scheduler=False`` leaves the deployments' schedules in place but tells the server not
    to create scheduled runs (tests: nothing fires behind their back). ``extra_env`` adds
    settings for the flows (and the deploy and import), on top of the stack's own.
    ``secret_blocks`` (block name → value) are saved as Prefect Secret blocks as soon as the
    server is up, for settings in ``extra_env`` that name them (``prefect-secret:<name>``).
    A world already in ``<home>/sandbox-world`` is used as it is (``children`` and ``seed``
    only shape a world generated here). ``warm_runner=False`` leaves the officer's
    deployments on the worker (one cold process per run).
    """
    out = out or console
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if auth is not None and (":" not in auth or auth.startswith(":")):
        raise CmeError("--auth must look like user:password")
    old = load_stack(home)
    if old is not None and old.running():
        raise CmeError(f"a UI stack is already running from {home} "
                       f"({', '.join(old.running())}); run `cme ui down --home {home}` first")
    for p, what in ((port, "--port"), (sandbox_port, "--sandbox-port")):
        if not _port_free(p):
            raise CmeError(f"port {p} on 127.0.0.1 is in use; choose another with {what}")
    if port == sandbox_port:
        raise CmeError("--port and --sandbox-port must differ")
    stack = Stack(home=home, repo=_repo_root(repo), port=port, sandbox_port=sandbox_port,
                  auth=auth, scheduler=scheduler, extra_env=dict(extra_env or {}))
    stack.logs.mkdir(exist_ok=True)
    stack.outbox.mkdir(mode=0o700, exist_ok=True)  # messages: the team only
    deadline = time.monotonic() + timeout
    try:
        with _step(out, f"Prefect server on {stack.ui_url}"):
            _spawn(stack, "server", [_exe("prefect"), "server", "start", "--host", "127.0.0.1",
                                     "--port", str(port)], stack.server_env())
            _wait_http(stack, "server", f"{stack.api_url}/health", deadline)
        if secret_blocks:
            with _step(out, f"Secret blocks ({len(secret_blocks)})"):
                _save_secret_blocks(stack, secret_blocks)
        with _step(out, "Synthetic world"):
            _ensure_world(stack, children, seed)
        with _step(out, f"Sandbox agencies on {stack.sandbox_url}"):
            _spawn(stack, "sandbox", [_exe("cme"), "sandbox", "serve", "--world",
                                      str(stack.world_path), "--port", str(sandbox_port)],
                   stack.client_env())
            _wait_http(stack, "sandbox", f"{stack.sandbox_url}/_sandbox/today", deadline)
        with _step(out, f"Work pool {POOL}"):
            _ensure_pool(stack, deadline)
        with _step(out, "Case database (migrate, import the generated referrals)"):
            _seed_database(stack, deadline)
        with _step(out, "Deployments (prefect deploy --all)"):
            _run(stack, "deploy", [_exe("prefect"), "--no-prompt", "deploy", "--all"],
                 stack.flow_env(), deadline, cwd=stack.repo)
        with _step(out, f"Worker on pool {POOL}"):
            # A fresh name: the server remembers earlier workers as online for a while.
            worker_name = f"cme-ui-{secrets.token_hex(4)}"
            _spawn(stack, "worker", [_exe("prefect"), "worker", "start", "--pool", POOL,
                                     "--name", worker_name], stack.flow_env(), cwd=stack.repo)
            _wait_worker(stack, worker_name, deadline)
        if warm_runner:
            with _step(out, "Officer runner (trace-referral, case-report, … kept warm)"):
                _spawn(stack, "runner", [sys.executable, "-m", "flows.officer_runner",
                                         "--prefect-yaml", str(stack.repo / "prefect.yaml")],
                       stack.flow_env(), cwd=stack.repo)
                _wait_runner(stack, deadline)
    except BaseException:
        stop_stack(stack, out=out)
        raise
    return stack


def stop_stack(stack: Stack, *, grace: float = 15.0, out: Console | None = None) -> list[str]:
    """Stop worker, then sandbox, then server (SIGTERM, wait, SIGKILL). Idempotent.

    Returns the names of the processes it stopped.
    """
    out = out or console
    stopped = []
    for name in STOP_ORDER:
        pid = stack.pids.get(name)
        proc = stack.procs.get(name)
        if pid is None:
            continue
        if _ours(name, pid):
            with _step(out, f"Stopping {name} (pid {pid})"):
                _terminate(pid, proc, grace)
            stopped.append(name)
        elif proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)  # reap an already-dead child
        stack.pids.pop(name, None)
        stack.procs.pop(name, None)
        if stack.home.is_dir():
            stack.save()
    state = stack.home / STATE_FILE
    if not stack.pids and state.exists():
        state.unlink()
    return stopped


# ---- steps --------------------------------------------------------------------------------

@contextlib.contextmanager
def _step(out: Console, label: str) -> Iterator[None]:
    started = time.perf_counter()
    with out.status(f"{label} ..."):
        try:
            yield
        except BaseException:
            out.print(f"[red]✗[/red] {label}")
            raise
    out.print(f"[green]✓[/green] {label} [dim]({time.perf_counter() - started:.1f} s)[/dim]")


def _ensure_world(stack: Stack, children: int, seed: int) -> None:
    if stack.world_path.is_file() and stack.referrals_path.is_file():
        return  # keep the world the database was seeded from
    from policy import london_date
    from sandbox import generate_world, write_generated

    world, referrals = generate_world(children, seed, today=london_date(datetime.now(UTC)))
    write_generated(world, referrals, stack.world_dir)


def _ensure_pool(stack: Stack, deadline: float) -> None:
    r = httpx.get(f"{stack.api_url}/work_pools/{POOL}", auth=stack.http_auth(), timeout=10)
    if r.status_code == 200:
        return
    if r.status_code != 404:
        raise CmeError(f"the Prefect API answered {r.status_code} when asked for the work "
                       f"pool {POOL} (a wrong --auth?)")
    _run(stack, "work-pool", [_exe("prefect"), "work-pool", "create", POOL, "--type", "process"],
         stack.client_env(), deadline)


def _save_secret_blocks(stack: Stack, blocks: Mapping[str, str]) -> None:
    from prefect.blocks.system import Secret
    from prefect.settings import temporary_settings

    with temporary_settings(updates=stack.prefect_settings()):
        for name, value in blocks.items():
            Secret(value=value).save(name, overwrite=True, _sync=True)  # type: ignore[call-arg]


def _seed_database(stack: Stack, deadline: float) -> None:
    # `cme import` migrates the database first, then runs the import flow, which reports
    # to this server (PREFECT_API_URL): the UI shows the intake run and its artifact.
    _run(stack, "import", [_exe("cme"), "import", str(stack.referrals_path)],
         stack.flow_env(), deadline, cwd=stack.home)


def _wait_worker(stack: Stack, name: str, deadline: float) -> None:
    url = f"{stack.api_url}/work_pools/{POOL}/workers/filter"
    while True:
        _check_alive(stack, "worker")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(url, json={}, auth=stack.http_auth(), timeout=5)
            if r.status_code == 200 and any(w.get("name") == name and w.get("status") == "ONLINE"
                                            for w in r.json()):
                return
        if time.monotonic() > deadline:
            raise CmeError(f"the worker did not come online in time; see {_log(stack, 'worker')}")
        time.sleep(0.5)


def _wait_runner(stack: Stack, deadline: float) -> None:
    """Until every officer deployment is served by the runner (no work pool, polled)."""
    from flows.officer_runner import OFFICER_DEPLOYMENTS

    todo = set(OFFICER_DEPLOYMENTS)
    flow_names = {n: t.split(":")[1].replace("_", "-") for n, t in OFFICER_DEPLOYMENTS.items()}
    while True:
        _check_alive(stack, "runner")
        for name in sorted(todo):
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"{stack.api_url}/deployments/name/{flow_names[name]}/{name}",
                              auth=stack.http_auth(), timeout=5)
                d = r.json() if r.status_code == 200 else {}
                if d.get("work_pool_name") is None and d.get("status") == "READY":
                    todo.discard(name)
        if not todo:
            return
        if time.monotonic() > deadline:
            raise CmeError(f"the officer runner did not serve {', '.join(sorted(todo))} in "
                           f"time; see {_log(stack, 'runner')}:\n{_tail(_log(stack, 'runner'))}")
        time.sleep(0.5)


# ---- processes ----------------------------------------------------------------------------

def _clean_env() -> dict[str, str]:
    # The stack is self-contained: no profile, API URL or CME_* setting of the caller leaks
    # into it (a shell pointed at production must not deploy there).
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "CME_")) and k != "VIRTUAL_ENV_PROMPT"}


def _exe(name: str) -> str:
    """The console script ``name`` of this Python environment."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    import shutil

    found = shutil.which(name)
    if not found:
        raise CmeError(f"cannot find the `{name}` command; install this package with its "
                       "dependencies (pip install -e .)")
    return found


def _repo_root(repo: Path | None) -> Path:
    candidates = [repo] if repo else [Path.cwd(), Path(__file__).resolve().parents[1]]
    for c in candidates:
        if c is not None and (c / "prefect.yaml").is_file():
            return c.resolve()
    raise CmeError("cannot find prefect.yaml: run from the checkout of this project")


def _log(stack: Stack, name: str) -> Path:
    return stack.logs / f"{name}.log"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _spawn(stack: Stack, name: str, cmd: list[str], env: Mapping[str, str],
           cwd: Path | None = None) -> None:
    with _log(stack, name).open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own console scripts, no shell
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env), cwd=str(cwd or stack.home), start_new_session=True,
        )
    stack.procs[name] = proc
    stack.pids[name] = proc.pid
    stack.save()


def _run(stack: Stack, name: str, cmd: list[str], env: Mapping[str, str], deadline: float,
         cwd: Path | None = None) -> None:
    """Run a command to completion (output to its log); a clear error if it fails."""
    log_path = _log(stack, name)
    with log_path.open("ab") as log:
        try:
            rc = subprocess.run(  # noqa: S603 - our own console scripts, no shell
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(env), cwd=str(cwd or stack.home),
                timeout=max(5.0, deadline - time.monotonic()), check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            raise CmeError(f"`{' '.join(cmd[1:3])}` timed out; see {log_path}") from None
    if rc != 0:
        raise CmeError(f"`{Path(cmd[0]).name} {' '.join(cmd[1:3])}` failed (exit {rc}); "
                       f"see {log_path}:\n{_tail(log_path)}")


def _check_alive(stack: Stack, name: str) -> None:
    proc = stack.procs.get(name)
    if proc is not None and proc.poll() is not None:
        raise CmeError(f"the {name} exited (code {proc.returncode}) before it was ready; "
                       f"see {_log(stack, name)}:\n{_tail(_log(stack, name))}")


def _wait_http(stack: Stack, name: str, url: str, deadline: float) -> None:
    while True:
        _check_alive(stack, name)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise CmeError(f"the {name} did not answer {url} in time; "
                           f"see {_log(stack, name)}:\n{_tail(_log(stack, name))}")
        time.sleep(0.3)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _ours(name: str, pid: int) -> bool:
    """Alive, leading its own process group, and running the command we started."""
    if not _alive(pid):
        return False
    try:
        if os.getpgid(pid) != pid:
            return False
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ProcessLookupError):
        return sys.platform != "linux" and _alive(pid)
    return _CMDLINE_MARKER[name] in cmdline


def _terminate(pid: int, proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    def gone() -> bool:
        if proc is not None:
            return proc.poll() is not None
        return not _alive(pid)

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        until = time.monotonic() + wait
        while time.monotonic() < until:
            if gone():
                break
            time.sleep(0.2)
        if gone():
            break
    # The group leader is gone; take down any straggler it left in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ---- commands -----------------------------------------------------------------------------

@ui_app.command("up")
def up_cmd(
    port: int = typer.Option(4200, "--port", help="Port of the Prefect server and UI."),
    sandbox_port: int = typer.Option(8765, "--sandbox-port",
                                     help="Port of the simulated agencies."),
    home: Path = typer.Option(Path(".cme-ui"), "--home",
                              help="Working folder: Prefect home, database, outbox, logs."),
    children: int = typer.Option(40, "--children", min=1, max=100_000,
                                 help="Synthetic referrals in the generated world."),
    seed: int = typer.Option(7, "--seed", help="Seed of the generated world."),
    auth: str = typer.Option(None, "--auth", metavar="USER:PASSWORD",
                             help="Turn on the server's basic auth with this auth string."),
    warm_runner: bool = typer.Option(True, "--warm-runner/--no-warm-runner",
                                     help="Serve the officer's deployments from one warm "
                                     "process (fast runs) rather than the worker."),
) -> None:
    """Start the Prefect server, sandbox agencies, deployments and a worker, for the UI."""
    home = home.resolve()
    running = load_stack(home)
    if running is not None and running.running():
        console.print(f"Already up: [bold]{running.ui_url}[/bold] "
                      f"({', '.join(running.running())} running from {home}).")
        return
    started = time.perf_counter()
    stack = start_stack(home, port=port, sandbox_port=sandbox_port, children=children,
                        seed=seed, auth=auth, warm_runner=warm_runner)
    refs = _sample_references(stack)
    console.print(
        f"\n[bold green]The CME UI is up[/bold green] in {time.perf_counter() - started:.0f} s: "
        f"[bold]{stack.ui_url}[/bold]\n"
        + (f"Log in with the auth string you gave ({auth.split(':', 1)[0]}:…).\n" if auth else "")
        + "\nNext (docs/officer-guide.md walks each, click by click):\n"
        "  Today's work: Runs → the latest nightly run → Artifacts → worklist\n"
        "  Deployments → trace-referral → Run → Custom run → reference, e.g. "
        + ", ".join(refs) + "\n"
        "  Deployments → case-report (same reference) → the run's Artifacts tab\n"
        "  Deployments → nightly → Run → Quick run: a night of tracing for every due case\n"
        f"  Database {stack.db_path}, outbox {stack.outbox}, logs {stack.logs}\n"
        f"  From a shell: CME_DATABASE_URL={stack.db_url} cme cases\n"
        f"  [bold]cme ui down --home {home}[/bold] stops everything."
    )


@ui_app.command("down")
def down_cmd(
    home: Path = typer.Option(Path(".cme-ui"), "--home", help="The folder `cme ui up` used."),
) -> None:
    """Stop the worker, then the sandbox, then the Prefect server (keeps the data)."""
    stack = load_stack(home)
    if stack is None:
        console.print(f"Nothing to stop in {home.resolve()}.")
        return
    stopped = stop_stack(stack)
    console.print(f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")


def _sample_references(stack: Stack, n: int = 3) -> list[str]:
    refs = []
    with stack.referrals_path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                refs.append(json.loads(line)["mendix_reference"])
            if len(refs) >= n:
                break
    return refs


def register(app: typer.Typer) -> None:
    app.add_typer(ui_app, name="ui")
