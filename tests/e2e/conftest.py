"""A real UI stack (Prefect server, sandbox agencies, deployments, worker) per test module.

Each module gets its own stack on free ports in a temp folder, with basic auth on, and it
is stopped (worker, then sandbox, then server) whatever happens in the tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from uikit import new_auth_string


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the PostgreSQL leg (``CME_TEST_DATABASE_URL`` set) these tests would only run a
    second time, unchanged: a UI stack keeps its case data in its own SQLite file, whatever
    the leg, as ``cme ui up`` does. They run on the SQLite leg; here they are skipped, saying
    why, which keeps about nine minutes off CI."""
    if not os.environ.get("CME_TEST_DATABASE_URL"):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="the UI stack keeps its own SQLite database whatever the "
                                   "leg; these tests run on the SQLite leg")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def ui_stack(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The module's stack; a module's ``STACK_ENV`` dict adds ``CME_*`` settings for its
    flows (e.g. fewer rounds before a proposal, so two nights make one)."""
    from prefect.settings import temporary_settings

    from cme.cli_ui import free_port, start_stack, stop_stack

    home = tmp_path_factory.mktemp("cme-ui")
    out = Console(stderr=True)
    port = free_port()
    sandbox_port = free_port()
    while sandbox_port == port:
        sandbox_port = free_port()
    # scheduler=False: the schedules are deployed, but no scheduled run fires mid-test.
    stack = start_stack(home, port=port, sandbox_port=sandbox_port, children=40, seed=7,
                        auth=new_auth_string(), scheduler=False, out=out,
                        extra_env=getattr(request.module, "STACK_ENV", None))
    procs = dict(stack.procs)
    try:
        with temporary_settings(updates=stack.prefect_settings()):
            yield stack
    finally:
        _server_errors(stack.logs / "server.log", out)
        stop_stack(stack, out=out)
        left = {name: p.pid for name, p in procs.items() if p.poll() is None}
        assert not left, f"processes left running: {left}"


def _server_errors(log: Path, out: Console) -> None:
    """The Prefect server's errors, if it logged any: pytest shows them with a failure, so a
    refusal seen in the browser ("Unknown error while creating flow run") can be traced."""
    if not log.exists():
        return
    lines = log.read_text(errors="replace").splitlines()
    marks = [i for i, line in enumerate(lines) if "Traceback" in line or " ERROR " in line]
    if marks:
        out.print(f"The UI server logged {len(marks)} error line(s); the last:", markup=False)
        out.print("\n".join(lines[marks[-1]:marks[-1] + 40]), markup=False, highlight=False)
